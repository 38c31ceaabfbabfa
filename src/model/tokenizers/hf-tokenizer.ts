import { Template } from "@huggingface/jinja";
import { Tokenizer as TokenizerJs } from "@huggingface/tokenizers";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { HfEncodeThread } from "./hf-encode-thread.js";
import type { ChatMessage, Tokenizer } from "./tokenizer.js";

type Json = Record<string, unknown>;

function readJson(path: string): Json {
  return existsSync(path) ? (JSON.parse(readFileSync(path, "utf8")) as Json) : {};
}

/** A special token as tokenizer_config.json writes it: a string, or {content: ...}. */
function tokenText(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (value && typeof value === "object" && typeof (value as Json).content === "string") return (value as Json).content as string;
  return undefined;
}

function ids(value: unknown): number[] {
  if (typeof value === "number") return [value];
  return Array.isArray(value) ? value.filter((v): v is number => typeof v === "number") : [];
}

/** GPT-2's byte-level alphabet: printable bytes stand for themselves, the rest for code points from 256 on. */
function byteLevelAlphabet(): Map<string, number> {
  const byChar = new Map<string, number>();
  let next = 256;
  for (let byte = 0; byte < 256; byte++) {
    const printable = (byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || byte >= 174;
    byChar.set(String.fromCodePoint(printable ? byte : next++), byte);
  }
  return byChar;
}

/** How tokenizer.json's decoder turns one token into bytes. */
type PieceRule = { kind: "byte-level"; alphabet: Map<string, number> } | { kind: "metaspace"; byteFallback: boolean; stripFirstSpace: boolean } | { kind: "plain" };

function pieceRule(decoder: Json | null, model: Json | undefined): PieceRule {
  const steps = decoder?.type === "Sequence" ? ((decoder.decoders as Json[]) ?? []) : decoder ? [decoder] : [];
  const types = steps.map((step) => step.type);
  if (types.includes("ByteLevel")) return { kind: "byte-level", alphabet: byteLevelAlphabet() };
  const metaspace = steps.find((step) => step.type === "Metaspace");
  const replacesMeta = steps.some((step) => step.type === "Replace" && (step.pattern as Json | undefined)?.String === "▁");
  if (metaspace || replacesMeta) {
    const strip = steps.find((step) => step.type === "Strip");
    const prepends = metaspace !== undefined && metaspace.prepend_scheme !== "never" && metaspace.add_prefix_space !== false;
    const byteFallback = types.includes("ByteFallback") || model?.byte_fallback === true;
    return { kind: "metaspace", byteFallback, stripFirstSpace: prepends || Number(strip?.start ?? 0) > 0 };
  }
  return { kind: "plain" };
}

const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;

/** Texts shorter than this encode on the calling thread: a round trip to the encoding thread costs more. */
const INLINE_CHARS = 1024;

/**
 * A Hugging Face tokenizer (tokenizer.json, read by @huggingface/tokenizers),
 * with BOS/EOS from tokenizer_config.json, generation_config.json and
 * config.json, and the chat template rendered by @huggingface/jinja.
 */
export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly addsBos: boolean;
  /** Every token that ends a reply: generation_config's eos_token_id list and the EOS token. */
  readonly stopTokens: number[];
  private readonly rule: PieceRule;
  private readonly specialIds: Set<number>;
  private readonly pieces: (Uint8Array | undefined)[] = [];
  private readonly encoder = new TextEncoder();
  private readonly template: Template | null;
  /** Special-token strings the template may use (bos_token, eos_token, ...). */
  private readonly templateTokens: Record<string, string>;

  private constructor(
    private readonly tokenizer: TokenizerJs,
    private readonly thread: HfEncodeThread,
    tokenizerJson: Json,
    tokenizerConfig: Json,
    generationConfig: Json,
    modelConfig: Json,
    chatTemplate: string | null,
  ) {
    const idOf = (text: string | undefined) => (text === undefined ? undefined : tokenizer.token_to_id(text));
    const eosIds = [...new Set([...ids(generationConfig.eos_token_id), ...ids(modelConfig.eos_token_id)])];
    const eos = idOf(tokenText(tokenizerConfig.eos_token)) ?? eosIds[0];
    if (eos === undefined) throw new Error("tokenizer: no EOS token in tokenizer_config.json, generation_config.json or config.json");
    this.eosId = eos;
    this.stopTokens = [...new Set([eos, ...ids(generationConfig.eos_token_id)])];
    const bos = idOf(tokenText(tokenizerConfig.bos_token)) ?? ids(generationConfig.bos_token_id)[0] ?? ids(modelConfig.bos_token_id)[0];
    // Without a BOS token (rare), report EOS, which such models use as a document separator.
    this.bosId = bos ?? eos;
    this.addsBos =
      bos !== undefined && (typeof tokenizerConfig.add_bos_token === "boolean" ? tokenizerConfig.add_bos_token : this.postProcessorAddsBos(bos));
    this.vocabSize = tokenizer.get_vocab(true).size;
    this.rule = pieceRule((tokenizerJson.decoder as Json | null) ?? null, tokenizerJson.model as Json | undefined);
    const added = (tokenizerJson.added_tokens as { id: number; special?: boolean }[] | undefined) ?? [];
    this.specialIds = new Set(added.filter((t) => t.special).map((t) => t.id));
    this.template = chatTemplate === null ? null : new Template(chatTemplate);
    this.templateTokens = Object.fromEntries(
      ["bos_token", "eos_token", "unk_token", "pad_token"].flatMap((key) => {
        const text = tokenText(tokenizerConfig[key]);
        return text === undefined ? [] : [[key, text]];
      }),
    );
  }

  /** Reads tokenizer.json and its companions from a checkpoint folder. */
  static load(dir: string): HfTokenizer {
    const tokenizerPath = join(dir, "tokenizer.json");
    if (!existsSync(tokenizerPath)) throw new Error(`${dir}: no tokenizer.json (only fast tokenizers are read)`);
    const tokenizerJson = readJson(tokenizerPath);
    const tokenizerConfig = readJson(join(dir, "tokenizer_config.json"));
    return new HfTokenizer(
      new TokenizerJs(tokenizerJson, tokenizerConfig),
      new HfEncodeThread(dir),
      tokenizerJson,
      tokenizerConfig,
      readJson(join(dir, "generation_config.json")),
      readJson(join(dir, "config.json")),
      chatTemplateOf(dir, tokenizerConfig),
    );
  }

  encode(text: string): number[] {
    return text.length === 0 ? [] : this.tokenizer.encode(text, { add_special_tokens: false }).ids;
  }

  /** Long texts are encoded on a worker thread (the library's encoder cannot pause), started on first use. */
  async encodeInSlices(text: string, signal?: AbortSignal): Promise<number[]> {
    signal?.throwIfAborted();
    return text.length < INLINE_CHARS ? this.encode(text) : this.thread.encode(text, signal);
  }

  close(): void {
    this.thread.close();
  }

  renderChat(messages: readonly ChatMessage[]): string {
    if (!this.template) throw new Error("the model has no chat template (tokenizer_config.json chat_template or chat_template.jinja)");
    return this.template.render({
      ...this.templateTokens,
      messages: messages.map(({ role, content }) => ({ role, content })),
      add_generation_prompt: true,
    });
  }

  tokenBytes(token: number, previous: number): Uint8Array {
    const piece = (this.pieces[token] ??= this.pieceBytes(token));
    const space = 0x20;
    // Sentencepiece-style tokenizers mark word starts with a space, dropped at the start of the text.
    const atStart = previous < 0 || (previous === this.bosId && this.addsBos);
    return this.rule.kind === "metaspace" && this.rule.stripFirstSpace && atStart && piece[0] === space ? piece.subarray(1) : piece;
  }

  private pieceBytes(token: number): Uint8Array {
    const text = this.tokenizer.id_to_token(token);
    if (text === undefined) return new Uint8Array();
    if (this.specialIds.has(token)) return this.encoder.encode(text);
    const rule = this.rule;
    switch (rule.kind) {
      case "byte-level": {
        const bytes: number[] = [];
        for (const char of text) {
          const byte = rule.alphabet.get(char);
          if (byte === undefined) bytes.push(...this.encoder.encode(char));
          else bytes.push(byte);
        }
        return Uint8Array.from(bytes);
      }
      case "metaspace": {
        const byte = rule.byteFallback ? BYTE_PIECE.exec(text) : null;
        return byte ? Uint8Array.of(parseInt(byte[1], 16)) : this.encoder.encode(text.replaceAll("▁", " "));
      }
      case "plain":
        return this.encoder.encode(this.tokenizer.decode([token]));
    }
  }

  /** Whether tokenizer.json's post-processor puts BOS in front of a text, as transformers would. */
  private postProcessorAddsBos(bos: number): boolean {
    const withSpecial = this.tokenizer.encode("a", { add_special_tokens: true }).ids;
    return withSpecial[0] === bos && this.tokenizer.encode("a", { add_special_tokens: false }).ids[0] !== bos;
  }
}

/** tokenizer_config.json's chat_template (a string, or named templates: "default" is used), else chat_template.jinja. */
function chatTemplateOf(dir: string, tokenizerConfig: Json): string | null {
  const configured = tokenizerConfig.chat_template;
  if (typeof configured === "string") return configured;
  if (Array.isArray(configured)) {
    const named = configured as { name: string; template: string }[];
    return (named.find((t) => t.name === "default") ?? named[0])?.template ?? null;
  }
  const file = join(dir, "chat_template.jinja");
  return existsSync(file) ? readFileSync(file, "utf8") : null;
}
