import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine, type EngineModel } from "../../src/engine/engine.js";
import { loadLlama2cCheckpoint } from "../../src/model/checkpoints/llama2c-checkpoint.js";
import { loadModel } from "../../src/model/load-model.js";
import { decodeTokens } from "../../src/model/tokenizers/tokenizer.js";
import { argmax, createReferenceCache, referenceForward } from "../reference/llama-forward.js";
import { DEFAULT_TEST_OPTIONS } from "../support/test-server.js";

// The committed recall model (models/recall, trained by tools/recall-model), checked through
// kvwarden itself: its loader, tokenizer, step graph and engine.
const RECALL_DIR = fileURLToPath(new URL("../../models/recall/", import.meta.url));
const FILES = { modelPath: join(RECALL_DIR, "recall.bin"), tokenizerPath: join(RECALL_DIR, "tok.bin") };

interface HeldOut {
  task: "passkey" | "multikey" | "multiquery";
  length: number;
  depth: number;
  prompt: string;
  answer: string;
  prompt_tokens: number[];
  answer_tokens: number[];
}

const heldOut: HeldOut[] = readFileSync(join(RECALL_DIR, "heldout.jsonl"), "utf8")
  .split("\n")
  .filter((line) => line.trim() !== "")
  .map((line) => JSON.parse(line) as HeldOut);

/** What tools/recall-model/export.py's PyTorch forward gave for one held-out prompt. */
const logitsCheck = JSON.parse(readFileSync(join(RECALL_DIR, "logits-check.json"), "utf8")) as {
  heldout_index: number;
  prompt_tokens: number[];
  logits: number[];
};

/** 50 held-out examples spread over the file: every task, prompt length and depth. */
const SAMPLE = Array.from({ length: 50 }, (_, k) => heldOut[Math.floor((k * heldOut.length) / 50)]);

const GREEDY = { temperature: 0, topK: 0, topP: 0, seed: 0n };

describe("recall model (models/recall)", () => {
  let model: EngineModel;
  let engine: Engine;

  beforeAll(async () => {
    model = await loadModel(FILES, { executionProvider: "cpu", intraOpThreads: 1 });
    engine = new Engine(model, DEFAULT_TEST_OPTIONS);
  });
  afterAll(() => engine?.close());

  it("is a grouped-query Llama of at least 4 layers and 2 KV heads, stored whole with a tied classifier", () => {
    const header = new Int32Array(readFileSync(FILES.modelPath).buffer.slice(0, 28));
    const [dim, hidden, layers, heads, kvHeads, vocab, seqLen] = Array.from(header);
    expect(layers).toBeGreaterThanOrEqual(4);
    expect(kvHeads).toBe(2);
    expect(heads).toBeGreaterThan(kvHeads);
    expect(heads % kvHeads).toBe(0);
    expect(vocab).toBeGreaterThan(0); // tied
    expect(seqLen).toBeGreaterThanOrEqual(1024);
    const hs = dim / heads;
    const floats = vocab * dim + layers * (2 * dim + 2 * heads * hs * dim + 2 * kvHeads * hs * dim + 3 * hidden * dim) + dim + seqLen * hs;
    expect(statSync(FILES.modelPath).size).toBe(28 + 4 * floats);
    expect(model.config).toMatchObject({ dim, hiddenDim: hidden, layers, heads, kvHeads, vocabSize: vocab, contextLength: seqLen, headSize: hs });
  });

  it("tokenizes held-out prompts and answers as the generator did", () => {
    for (const example of SAMPLE.slice(0, 12)) {
      expect(model.tokenizer.encode(example.prompt)).toEqual(example.prompt_tokens);
      expect(model.tokenizer.encode(example.prompt + example.answer)).toEqual([...example.prompt_tokens, ...example.answer_tokens]);
      expect(decodeTokens(model.tokenizer, example.answer_tokens, example.prompt_tokens.at(-1))).toBe(example.answer);
    }
  });

  it("gives the logits PyTorch gave for a held-out prompt (kvwarden's reference forward pass)", () => {
    const weights = loadLlama2cCheckpoint(FILES.modelPath, "recall");
    const { logits } = referenceForward(weights, createReferenceCache(weights.config), logitsCheck.prompt_tokens, 0);
    const last = logits[logits.length - 1];
    expect(last.length).toBe(logitsCheck.logits.length);
    const worst = Math.max(...logitsCheck.logits.map((expected, i) => Math.abs(last[i] - expected)));
    expect(worst).toBeLessThan(2e-3);
    expect(argmax(last)).toBe(argmax(logitsCheck.logits));
    expect(argmax(last)).toBe(heldOut[logitsCheck.heldout_index].answer_tokens[0]);
  });

  it("answers at least 95% of 50 held-out recall questions exactly, greedily, with the full cache", async () => {
    const misses: string[] = [];
    for (const [i, example] of SAMPLE.entries()) {
      const sequenceId = `recall-${i}`;
      const prefill = await engine.prefill({ sequenceId, text: example.prompt });
      expect(prefill.tokenIds).toEqual([model.tokenizer.bosId, ...example.prompt_tokens]);
      const generated: number[] = [];
      let text = "";
      const decode = engine.decode({ sequenceId, maxNewTokens: example.answer_tokens.length + 1, sampling: GREEDY, stopTokenIds: [], ignoreEos: false });
      for await (const token of decode) {
        generated.push(token.tokenId);
        text += token.text;
      }
      engine.release(sequenceId);
      const expected = [...example.answer_tokens, model.tokenizer.eosId];
      if (JSON.stringify(generated) !== JSON.stringify(expected) || text !== example.answer) {
        misses.push(`${example.task} length ${example.length} depth ${example.depth}: ${JSON.stringify(text)} for ${JSON.stringify(example.answer)}`);
      }
    }
    const accuracy = 1 - misses.length / SAMPLE.length;
    expect(accuracy, misses.join("\n")).toBeGreaterThanOrEqual(0.95);
  });
});
