import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FinishReason } from "../../src/gen/kvwarden/v1/kvwarden.js";
import { loadTestModel, REFERENCE_FIRST_TOKENS, REFERENCE_TEXT } from "../support/test-model.js";
import { decodeAll, startTestServer, type TestServer } from "../support/test-server.js";

describe("generation over gRPC", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer(await loadTestModel());
  });
  afterAll(() => t.close());

  it("reproduces llama2.c's greedy sample from BOS, token for token, for 200 tokens", async () => {
    const prefill = await t.client.prefill({ sequenceId: "greedy", tokenIds: [1], text: "" });
    expect(prefill).toMatchObject({ promptTokens: 1, position: 1 });
    const messages = await decodeAll(t.client, { sequenceId: "greedy", maxNewTokens: 200 });
    expect(messages).toHaveLength(200);
    expect(messages.slice(0, 20).map((m) => m.tokenId)).toEqual(REFERENCE_FIRST_TOKENS);
    expect(messages.map((m) => m.text).join("")).toBe(REFERENCE_TEXT);
    expect(messages.map((m) => m.position)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    expect(messages.slice(0, -1).every((m) => m.finishReason === FinishReason.FINISH_REASON_UNSPECIFIED)).toBe(true);
    expect(messages.at(-1)!.finishReason).toBe(FinishReason.FINISH_REASON_LENGTH);
  });

  it("continues a sequence across Decode calls exactly as one long call", async () => {
    await t.client.prefill({ sequenceId: "split", tokenIds: [1], text: "" });
    const first = await decodeAll(t.client, { sequenceId: "split", maxNewTokens: 7 });
    const second = await decodeAll(t.client, { sequenceId: "split", maxNewTokens: 13 });
    expect([...first, ...second].map((m) => m.tokenId)).toEqual(REFERENCE_FIRST_TOKENS);
    const stats = await t.client.stats({ sequenceId: "split" });
    // 1 prompt token + 20 generated; the last generated token is fed by the next call that needs it.
    expect(stats.sequences[0].position).toBe(21);
    expect(stats.sequences[0].layers.every((layer) => layer.headLengths.every((n) => n === 20))).toBe(true);
  });

  it("tokenizes text with BOS first and appends to an existing sequence", async () => {
    const first = await t.client.prefill({ sequenceId: "text", tokenIds: [], text: "Once upon a time" });
    expect(first.tokenIds).toEqual([1, 403, 407, 261, 378]);
    const second = await t.client.prefill({ sequenceId: "text", tokenIds: [], text: " there" });
    expect(second.tokenIds[0]).not.toBe(1);
    expect(second.position).toBe(5 + second.promptTokens);
  });

  it("stops at EOS/BOS by default and at caller-given stop tokens", async () => {
    await t.client.prefill({ sequenceId: "stop", tokenIds: [1], text: "" });
    const messages = await decodeAll(t.client, { sequenceId: "stop", maxNewTokens: 50, stopTokenIds: [REFERENCE_FIRST_TOKENS[4]] });
    expect(messages.map((m) => m.tokenId)).toEqual(REFERENCE_FIRST_TOKENS.slice(0, 5));
    expect(messages.at(-1)).toMatchObject({ finishReason: FinishReason.FINISH_REASON_STOP, text: "" });

    await t.client.prefill({ sequenceId: "eos", tokenIds: [1], text: "" });
    const story = await decodeAll(t.client, { sequenceId: "eos", maxNewTokens: 500 });
    expect(story.at(-1)!.finishReason).toBe(FinishReason.FINISH_REASON_STOP);
    expect([1, 2]).toContain(story.at(-1)!.tokenId);
  });

  it("describes the model and every policy with its parameters and minimum budget in Info", async () => {
    const info = await t.client.info();
    expect(info.model).toMatchObject({ layers: 5, heads: 8, kvHeads: 4, headSize: 8, vocabSize: 512, contextLength: 512 });
    const policies = Object.fromEntries(info.policies.map((p) => [p.name, p]));
    expect(Object.keys(policies).sort()).toEqual(
      ["adakv", "h2o", "knorm", "nacl", "none", "pyramidkv", "random", "simlayerkv", "snapkv", "streaming_llm", "tova"],
    );
    expect(policies.snapkv.minimumBudgetTokens).toBe(33);
    expect(policies.streaming_llm).toMatchObject({ minimumBudgetTokens: 5, parameters: [{ name: "sink_tokens", defaultValue: "4" }] });
  });

  it("samples reproducibly: the same seed gives the same tokens", async () => {
    const sample = async (id: string, seed: bigint) => {
      await t.client.prefill({ sequenceId: id, tokenIds: [1], text: "" });
      const messages = await decodeAll(t.client, { sequenceId: id, maxNewTokens: 40, sampling: { temperature: 1, topK: 40, topP: 0.9, seed } });
      return messages.map((m) => m.tokenId);
    };
    const a = await sample("seed-a", 7n);
    const b = await sample("seed-b", 7n);
    const c = await sample("seed-c", 8n);
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
  });
});
