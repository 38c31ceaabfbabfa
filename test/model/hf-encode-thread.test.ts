import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { HfEncodeThread } from "../../src/model/tokenizers/hf-encode-thread.js";
import { HfTokenizer } from "../../src/model/tokenizers/hf-tokenizer.js";
import { MODEL_FILES } from "../support/test-model.js";
import { byteLevelTokenizerJson, llama2cTokenizerJson, writeTokenizer } from "./hf-fixtures.js";

const TEXTS = [
  "hello world",
  "Hello, world! It's 2024 — héllo wörld.",
  "emoji 🙂🚀 and 日本語 and\ttabs\nand new lines\n\n",
  "  leading and trailing spaces  ",
];
/** Long enough to be sent to the thread (short texts are encoded inline). */
const LONG_TEXTS = TEXTS.map((text) => text.repeat(Math.ceil(3000 / text.length)));

/** Encoding on the worker thread gives the synchronous encoder's ids, and stops when asked. */
describe("Hugging Face encoding on a worker thread", () => {
  const root = mkdtempSync(join(tmpdir(), "kvwarden-hf-thread-"));
  const byteLevel = join(root, "byte-level");
  writeTokenizer(byteLevel, byteLevelTokenizerJson([["h", "e"], ["l", "l"], ["he", "ll"], ["hell", "o"], [" ", "w"]], ["<|endoftext|>"]), {
    eos_token: "<|endoftext|>",
  });
  const sentencepiece = join(root, "sentencepiece");
  writeTokenizer(sentencepiece, llama2cTokenizerJson(MODEL_FILES.tokenizerPath, 512), { bos_token: "<s>", eos_token: "</s>" });
  const tokenizers = [byteLevel, sentencepiece].map((dir) => HfTokenizer.load(dir));
  afterAll(() => {
    for (const tokenizer of tokenizers) tokenizer.close();
    rmSync(root, { recursive: true, force: true });
  });

  it("gives exactly the synchronous encoder's ids, unicode included", async () => {
    for (const tokenizer of tokenizers) {
      for (const text of [...TEXTS, ...LONG_TEXTS]) {
        expect(await tokenizer.encodeInSlices(text), text.slice(0, 40)).toEqual(tokenizer.encode(text));
      }
    }
  });

  it("encodes concurrent texts each into its own ids", async () => {
    const [tokenizer] = tokenizers;
    const encoded = await Promise.all(LONG_TEXTS.map((text) => tokenizer.encodeInSlices(text)));
    expect(encoded).toEqual(LONG_TEXTS.map((text) => tokenizer.encode(text)));
  });

  it("rejects with the signal's reason once it aborts, and keeps serving the other texts", async () => {
    const thread = new HfEncodeThread(sentencepiece);
    try {
      const running = new AbortController();
      const queued = new AbortController();
      const first = thread.encode(LONG_TEXTS[0], running.signal);
      const second = thread.encode(LONG_TEXTS[1], queued.signal);
      const third = thread.encode(LONG_TEXTS[2]);
      queued.abort(new Error("queued gone"));
      running.abort(new Error("running gone"));
      await expect(first).rejects.toThrow("running gone");
      await expect(second).rejects.toThrow("queued gone");
      expect(await third).toEqual(tokenizers[1].encode(LONG_TEXTS[2]));
      expect(() => thread.encode("x", running.signal)).toThrow("running gone");
    } finally {
      thread.close();
    }
  });

  it("fails texts not yet encoded when closed, and starts again on the next call", async () => {
    const thread = new HfEncodeThread(byteLevel);
    const pending = thread.encode(LONG_TEXTS[0]);
    thread.close();
    await expect(pending).rejects.toThrow("the tokenizer was closed");
    expect(await thread.encode(LONG_TEXTS[3])).toEqual(tokenizers[0].encode(LONG_TEXTS[3]));
    thread.close();
  });

  it("fails a text when the thread cannot load the tokenizer", async () => {
    const thread = new HfEncodeThread(join(root, "missing"));
    await expect(thread.encode(LONG_TEXTS[0])).rejects.toThrow();
    thread.close();
  });
});
