import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EngineModel } from "../../src/engine/engine.js";
import type { EvictionSpec } from "../../src/gen/kvwarden/v1/kvwarden.js";
import { loadTestModel, REFERENCE_FIRST_TOKENS } from "../support/test-model.js";
import { decodeAll, startTestServer, statusOf, type TestServer } from "../support/test-server.js";

const spec = (fields: Partial<EvictionSpec>): EvictionSpec => ({
  policy: "streaming_llm",
  pooling: 0,
  groupReduction: 0,
  skipLayers: [],
  basePolicy: "",
  ...fields,
});

describe("bad input gets a clear status and loses nothing", () => {
  let model: EngineModel;
  let t: TestServer;

  /** The observable state of a sequence: its Stats entry and the next greedy tokens it would produce. */
  const snapshot = async (sequenceId: string) => {
    const stats = await t.client.stats({ sequenceId });
    const { idleMs: _idle, ...sequence } = stats.sequences[0];
    return sequence;
  };

  beforeAll(async () => {
    model = await loadTestModel();
    t = await startTestServer(model);
    await t.client.prefill({ sequenceId: "victim", tokenIds: [1, 403, 407], text: "" });
  });
  afterAll(() => t.close());

  it("answers NOT_FOUND for unknown sequences, and Release of one is not an error", async () => {
    expect((await statusOf(decodeAll(t.client, { sequenceId: "nope" }))).code).toBe(status.NOT_FOUND);
    expect((await statusOf(t.client.evict({ sequenceId: "nope", eviction: spec({ maxTokens: 8 }) }))).code).toBe(status.NOT_FOUND);
    const stats = await statusOf(t.client.stats({ sequenceId: "nope" }));
    expect(stats).toMatchObject({ code: status.NOT_FOUND, details: expect.stringContaining("'nope' not found") });
    expect(await t.client.release("nope")).toEqual({ found: false, freedBytes: 0n });
  });

  it.each([
    ["empty input", { tokenIds: [], text: "" }, "empty"],
    ["both token_ids and text", { tokenIds: [1], text: "hi" }, "either token_ids or text"],
    ["a token outside the vocabulary", { tokenIds: [1, 512], text: "" }, "token_ids[1] = 512"],
    ["an unknown policy", { tokenIds: [5], text: "", eviction: spec({ policy: "magic", maxTokens: 8 }) }, "unknown eviction policy 'magic'"],
    ["a budget below the policy's minimum", { tokenIds: [5, 6, 7, 8, 9, 10], text: "", eviction: spec({ maxTokens: 4 }) }, "minimum of 5"],
    ["keep_fraction 0", { tokenIds: [5], text: "", eviction: spec({ keepFraction: 0 }) }, "keep_fraction must be in (0, 1]"],
    ["keep_fraction above 1", { tokenIds: [5], text: "", eviction: spec({ keepFraction: 1.5 }) }, "keep_fraction must be in (0, 1]"],
    ["no budget", { tokenIds: [5], text: "", eviction: spec({}) }, "needs a budget"],
    ["an absurd sink count", { tokenIds: [5], text: "", eviction: spec({ maxTokens: 8, sinkTokens: 5_000_000 }) }, "eviction.sink_tokens"],
    ["a parameter the policy does not take", { tokenIds: [5], text: "", eviction: spec({ maxTokens: 8, window: 4 }) }, "does not take parameter window"],
    ["knorm's ablation asked of another policy", { tokenIds: [5], text: "", eviction: spec({ maxTokens: 8, keepHighestNorm: true }) }, "does not take parameter keep_highest_norm"],
    ["a random_share above 1", { tokenIds: [5], text: "", eviction: spec({ policy: "nacl", maxTokens: 8, randomShare: 1.5 }) }, "eviction.random_share must be in [0, 1], got 1.5"],
    ["a random_share of NaN", { tokenIds: [5], text: "", eviction: spec({ policy: "nacl", maxTokens: 8, randomShare: Number.NaN }) }, "eviction.random_share must be in [0, 1]"],
    ["random_share asked of another policy", { tokenIds: [5], text: "", eviction: spec({ maxTokens: 8, randomShare: 0 }) }, "does not take parameter random_share"],
    [
      "skip_no_layers with skip_layers",
      { tokenIds: [5], text: "", eviction: spec({ policy: "knorm", maxTokens: 8, skipLayers: [1], skipNoLayers: true }) },
      "eviction.skip_no_layers contradicts eviction.skip_layers",
    ],
  ])("answers INVALID_ARGUMENT for %s, leaving the sequence as it was", async (_name, request, message) => {
    const before = await snapshot("victim");
    const result = await statusOf(t.client.prefill({ sequenceId: "victim", ...request }));
    expect(result.code).toBe(status.INVALID_ARGUMENT);
    expect(result.details).toContain(message);
    expect(await snapshot("victim")).toEqual(before);
  });

  it("refuses a new sequence with bad input without creating it", async () => {
    const result = await statusOf(t.client.prefill({ sequenceId: "fresh", tokenIds: [99999], text: "" }));
    expect(result.code).toBe(status.INVALID_ARGUMENT);
    expect((await statusOf(t.client.stats({ sequenceId: "fresh" }))).code).toBe(status.NOT_FOUND);
  });

  it.each([
    ["max_new_tokens 0", { maxNewTokens: 0 }, "max_new_tokens"],
    ["a negative temperature", { maxNewTokens: 1, sampling: { temperature: -1, topK: 0, topP: 0 } }, "sampling.temperature"],
    ["top_p above 1", { maxNewTokens: 1, sampling: { temperature: 1, topK: 0, topP: 2 } }, "sampling.top_p"],
    ["a stop token outside the vocabulary", { maxNewTokens: 1, stopTokenIds: [4096] }, "stop_token_ids[0]"],
  ])("answers INVALID_ARGUMENT to Decode with %s", async (_name, request, message) => {
    const before = await snapshot("victim");
    const result = await statusOf(decodeAll(t.client, { sequenceId: "victim", ...request }));
    expect(result.code).toBe(status.INVALID_ARGUMENT);
    expect(result.details).toContain(message);
    expect(await snapshot("victim")).toEqual(before);
  });

  it("answers INVALID_ARGUMENT for a missing or oversized sequence id", async () => {
    expect((await statusOf(t.client.prefill({ sequenceId: "", tokenIds: [1], text: "" }))).details).toContain("sequence_id is required");
    const long = await statusOf(t.client.prefill({ sequenceId: "x".repeat(300), tokenIds: [1], text: "" }));
    expect(long).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining("limit is 256") });
  });

  it("refuses positions past the trained context with OUT_OF_RANGE", async () => {
    await t.client.prefill({ sequenceId: "long", tokenIds: Array(500).fill(5), text: "" });
    const before = await snapshot("long");
    const result = await statusOf(t.client.prefill({ sequenceId: "long", tokenIds: Array(13).fill(5), text: "" }));
    expect(result).toMatchObject({ code: status.OUT_OF_RANGE, details: expect.stringContaining("trained context of 512") });
    expect(await snapshot("long")).toEqual(before);
    // Decoding stops at the context limit with finish_reason CONTEXT.
    const messages = await decodeAll(t.client, { sequenceId: "long", maxNewTokens: 100, ignoreEos: true });
    expect(messages).toHaveLength(12);
    expect(messages.at(-1)!.position).toBe(511);
    expect(await t.client.release("long")).toMatchObject({ found: true });
  });

  it("keeps serving other sequences after all of the above", async () => {
    await t.client.prefill({ sequenceId: "healthy", tokenIds: [1], text: "" });
    const messages = await decodeAll(t.client, { sequenceId: "healthy", maxNewTokens: 20 });
    expect(messages.map((m) => m.tokenId)).toEqual(REFERENCE_FIRST_TOKENS);
  });
});

describe("budgets", () => {
  let model: EngineModel;
  beforeAll(async () => {
    model = await loadTestModel();
  });

  it("answers RESOURCE_EXHAUSTED with the bytes asked and free when the global budget would be exceeded, changing nothing", async () => {
    const t = await startTestServer(model, { kvBudgetBytes: 300_000 });
    try {
      await t.client.prefill({ sequenceId: "a", tokenIds: Array(100).fill(5), text: "" });
      const before = await t.client.stats({ sequenceId: "" });
      const result = await statusOf(t.client.prefill({ sequenceId: "a", tokenIds: Array(150).fill(5), text: "" }));
      expect(result.code).toBe(status.RESOURCE_EXHAUSTED);
      expect(result.details).toMatch(/\d+ bytes requested, \d+ bytes free/);
      const after = await t.client.stats({ sequenceId: "" });
      expect(after.kvBytesUsed).toBe(before.kvBytesUsed);
      expect(after.sequences.map(({ idleMs: _, ...s }) => s)).toEqual(before.sequences.map(({ idleMs: _, ...s }) => s));
      // A new sequence that does not fit is not created at all.
      expect((await statusOf(t.client.prefill({ sequenceId: "b", tokenIds: Array(300).fill(5), text: "" }))).code).toBe(
        status.RESOURCE_EXHAUSTED,
      );
      expect((await t.client.stats({ sequenceId: "" })).sequenceCount).toBe(1);
      // Releasing frees every byte.
      const released = await t.client.release("a");
      expect(released.freedBytes).toBe(before.kvBytesUsed);
      expect((await t.client.stats({ sequenceId: "" })).kvBytesUsed).toBe(0n);
    } finally {
      await t.close();
    }
  });

  it("enforces the per-sequence token cap, and eviction makes room again", async () => {
    const t = await startTestServer(model, { maxSequenceTokens: 64 });
    try {
      await t.client.prefill({ sequenceId: "capped", tokenIds: Array(60).fill(5), text: "" });
      const refused = await statusOf(t.client.prefill({ sequenceId: "capped", tokenIds: Array(10).fill(5), text: "" }));
      expect(refused).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: expect.stringContaining("per-sequence cap of 64") });
      const ok = await t.client.prefill({
        sequenceId: "capped",
        tokenIds: Array(4).fill(5),
        text: "",
        eviction: spec({ maxTokens: 32 }),
      });
      expect(ok.eviction).toMatchObject({ applied: true, entriesAfter: BigInt(32 * 4 * 5) });
      expect(ok.position).toBe(64);
      await t.client.prefill({ sequenceId: "capped", tokenIds: Array(10).fill(5), text: "" });
    } finally {
      await t.close();
    }
  });

  it("expires idle sequences after the TTL", async () => {
    const t = await startTestServer(model, { sequenceTtlMs: 50 });
    try {
      await t.client.prefill({ sequenceId: "ephemeral", tokenIds: [1], text: "" });
      await new Promise((resolve) => setTimeout(resolve, 60));
      t.engine.expireIdle();
      expect((await statusOf(t.client.stats({ sequenceId: "ephemeral" }))).code).toBe(status.NOT_FOUND);
      expect((await t.client.stats({ sequenceId: "" })).kvBytesUsed).toBe(0n);
    } finally {
      await t.close();
    }
  });
});
