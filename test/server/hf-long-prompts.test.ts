import { status } from "@grpc/grpc-js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EngineModel } from "../../src/engine/engine.js";
import { convertHfCheckpoint } from "../../src/model/conversion/convert.js";
import { loadModelDir } from "../../src/model/load-model.js";
import { llama2cAsHfConfig, llama2cAsHfTensors, llama2cTokenizerJson, writeHfCheckpoint, writeTokenizer } from "../model/hf-fixtures.js";
import { loadTestWeights, MODEL_FILES, REFERENCE_TEXT } from "../support/test-model.js";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { answersWhileTokenizing, observeTokenizing } from "../support/tokenizing-order.js";

/**
 * A Hugging Face tokenizer encodes a long text on its worker thread: health
 * and Stats are answered while a Prefill's text is being tokenized.
 */
describe("a long prompt on a Hugging Face tokenizer", () => {
  const root = mkdtempSync(join(tmpdir(), "kvwarden-hf-long-"));
  let model: EngineModel;
  let t: TestServer;
  /** Resolves when the server starts tokenizing a text. */
  let tokenizing: Promise<void>;

  beforeAll(async () => {
    const weights = loadTestWeights();
    const hfDir = join(root, "hf");
    writeHfCheckpoint(hfDir, llama2cAsHfConfig(weights.config), llama2cAsHfTensors(weights), { dtype: "F32", shards: 1 });
    writeTokenizer(hfDir, llama2cTokenizerJson(MODEL_FILES.tokenizerPath, weights.config.vocabSize), { bos_token: "<s>", eos_token: "</s>" }, { bos_token_id: 1, eos_token_id: 2 });
    await convertHfCheckpoint(hfDir, join(root, "converted"));
    model = await loadModelDir(join(root, "converted"), { executionProvider: "cpu", intraOpThreads: 1 });
    const observed = observeTokenizing(model.tokenizer);
    tokenizing = observed.tokenizing;
    t = await startTestServer({ ...model, tokenizer: observed.tokenizer });
  });
  afterAll(async () => {
    await t?.close();
    await model?.runner.release();
    rmSync(root, { recursive: true, force: true });
  });

  it("answers health and Stats before the Prefill ends", async () => {
    // A quarter MiB: seconds of encoding, which held the event loop before the thread.
    const text = `${REFERENCE_TEXT}\n`.repeat(Math.ceil(256 * 1024 / REFERENCE_TEXT.length));
    const { answered, prefill } = await answersWhileTokenizing(t, tokenizing, text);
    expect(answered.slice(0, 2).sort()).toEqual(["health SERVING", "stats 0"]);
    expect(answered[2]).toBe("prefill");
    expect(prefill).toMatchObject({ code: status.OUT_OF_RANGE, details: expect.stringContaining("past the model's trained context of 512 tokens") });
  });
});
