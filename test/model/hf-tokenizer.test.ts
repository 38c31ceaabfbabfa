import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { HfTokenizer } from "../../src/model/tokenizers/hf-tokenizer.js";
import { Llama2cTokenizer } from "../../src/model/tokenizers/llama2c-tokenizer.js";
import { decodeTokens, type Tokenizer } from "../../src/model/tokenizers/tokenizer.js";
import { MODEL_FILES } from "../support/test-model.js";
import { byteLevelTokenizerJson, llama2cTokenizerJson, writeTokenizer } from "./hf-fixtures.js";

const TEXTS = [
  "hello world",
  "Hello, world! It's 2024 — héllo wörld.",
  "emoji 🙂🚀 and 日本語 and\ttabs\nand new lines\n\n",
  "  leading and trailing spaces  ",
  "Once upon a time, there was a little girl named Lily.",
];

/** Streams a text's tokens one at a time, as Decode does, and joins the pieces' bytes. */
function streamed(tokenizer: Tokenizer, ids: number[], first = -1): string {
  const decoder = new TextDecoder("utf-8");
  let text = "";
  let previous = first;
  for (const id of ids) {
    text += decoder.decode(tokenizer.tokenBytes(id, previous), { stream: true });
    previous = id;
  }
  return text + decoder.decode();
}

const CHATML =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

describe("tokenizer.json through @huggingface/tokenizers", () => {
  const root = mkdtempSync(join(tmpdir(), "kvwarden-hf-tok-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  describe("a byte-level BPE tokenizer (Qwen2, Llama 3 style) written by the test", () => {
    const dir = join(root, "byte-level");
    const merges: [string, string][] = [["h", "e"], ["l", "l"], ["he", "ll"], ["hell", "o"], [" ", "w"], ["o", "r"], [" w", "or"], [" wor", "ld"], ["l", "d"], [" ", "t"]];
    writeTokenizer(dir, byteLevelTokenizerJson(merges, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]), {
      bos_token: null,
      eos_token: "<|im_end|>",
      pad_token: "<|endoftext|>",
      chat_template: CHATML,
    });
    writeFileSync(join(dir, "config.json"), JSON.stringify({ bos_token_id: 266, eos_token_id: 268 }));
    writeFileSync(join(dir, "generation_config.json"), JSON.stringify({ eos_token_id: [268, 266] }));
    const tokenizer = HfTokenizer.load(dir);

    it("encodes with its merges and round-trips any text, token by token", () => {
      const ids = tokenizer.encode("hello world");
      expect(ids).toHaveLength(2); // "hello", " world"
      for (const text of TEXTS) {
        const encoded = tokenizer.encode(text);
        expect(decodeTokens(tokenizer, encoded), text).toBe(text);
        expect(streamed(tokenizer, encoded), text).toBe(text);
      }
      // A multi-byte character split across byte tokens still decodes whole when streamed.
      expect(tokenizer.encode("🙂").length).toBe(4);
    });

    it("takes BOS, EOS and stop tokens from the configs and adds no BOS (none in its post-processor)", () => {
      expect(tokenizer.addsBos).toBe(false);
      expect(tokenizer.bosId).toBe(266);
      expect(tokenizer.eosId).toBe(268);
      expect(tokenizer.stopTokens).toEqual([268, 266]);
      expect(tokenizer.vocabSize).toBe(256 + merges.length + 3);
    });

    it("renders a chat template and keeps its special tokens whole", () => {
      const ids = tokenizer.encode(
        tokenizer.renderChat([
          { role: "system", content: "Be brief." },
          { role: "user", content: "hello world" },
        ]),
      );
      const [start, end] = [tokenizer.encode("<|im_start|>"), tokenizer.encode("<|im_end|>")];
      expect(start).toEqual([267]);
      expect(end).toEqual([268]);
      expect(ids.filter((id) => id === 267)).toHaveLength(3);
      expect(decodeTokens(tokenizer, ids)).toBe("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhello world<|im_end|>\n<|im_start|>assistant\n");
    });
  });

  describe("stories260K's tokenizer as a sentencepiece-style tokenizer.json (Llama 2, Mistral style)", () => {
    const dir = join(root, "sentencepiece");
    writeTokenizer(dir, llama2cTokenizerJson(MODEL_FILES.tokenizerPath, 512), { bos_token: "<s>", eos_token: "</s>" });
    const tokenizer = HfTokenizer.load(dir);
    const llama2c = Llama2cTokenizer.load(MODEL_FILES.tokenizerPath, 512);

    it("encodes exactly as llama2.c's own encoder, byte fallback included", () => {
      for (const text of TEXTS) expect(tokenizer.encode(text), text).toEqual(llama2c.encode(text));
    });

    it("round-trips text, dropping the word-start space after BOS as llama2.c does", () => {
      for (const text of TEXTS.filter((t) => !t.startsWith(" "))) {
        const ids = tokenizer.encode(text);
        expect(streamed(tokenizer, ids, tokenizer.bosId), text).toBe(text);
        expect(streamed(tokenizer, ids, tokenizer.bosId)).toBe(streamed(llama2c, ids, llama2c.bosId));
      }
    });

    it("decodes the same with a Metaspace decoder (newer tokenizer.json files)", () => {
      const metaspaceDir = join(root, "metaspace");
      const json = { ...llama2cTokenizerJson(MODEL_FILES.tokenizerPath, 512), decoder: { type: "Metaspace", replacement: "▁", prepend_scheme: "first", split: false } };
      writeTokenizer(metaspaceDir, json, { bos_token: "<s>", eos_token: "</s>" });
      const metaspace = HfTokenizer.load(metaspaceDir);
      for (const text of TEXTS.filter((t) => !t.startsWith(" "))) {
        expect(streamed(metaspace, metaspace.encode(text), metaspace.bosId), text).toBe(text);
      }
    });

    it("adds BOS as its post-processor says, and has no chat template", () => {
      expect(tokenizer.addsBos).toBe(true);
      expect([tokenizer.bosId, tokenizer.eosId]).toEqual([1, 2]);
      expect(() => tokenizer.renderChat([{ role: "user", content: "hi" }])).toThrow(/no chat template/);
    });
  });
});
