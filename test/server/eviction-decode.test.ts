import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EvictionSpec, type EvictionResult } from "../../src/gen/kvwarden/v1/kvwarden.js";
import type { ModelWeights } from "../../src/model/checkpoints/model-weights.js";
import { argmax, createReferenceCache, evictReference, referenceForward, type ReferenceCache } from "../reference/llama-forward.js";
import { loadTestModel, loadTestWeights } from "../support/test-model.js";
import { decodeAll, startTestServer, type TestServer } from "../support/test-server.js";

const PROMPT =
  "Once upon a time, there was a little dog named Max. Max liked to run in the big green park with his friend Sue. " +
  "One day, Max found a shiny red ball under a tree. He wanted to show it to Sue, so he ran very fast.";
// Small enough that keeping one entry more, less or other changes the greedy tokens, so they pin down the kept set.
const BUDGET = 16;
const SINKS = 4;
const NEW_TOKENS = 30;

/**
 * The reference pass driven the way the engine drives a sequence: a decoded
 * token is fed lazily, by the next step that needs it, and positions count
 * every token ever fed, whatever the cache holds.
 */
class ReferenceSequence {
  readonly cache: ReferenceCache;
  fed = 0;
  private pending: number | null = null;
  private logits: Float64Array = new Float64Array();

  constructor(private readonly weights: ModelWeights) {
    this.cache = createReferenceCache(weights.config);
  }

  feed(tokens: number[]): void {
    const all = this.pending === null ? tokens : [this.pending, ...tokens];
    this.logits = referenceForward(this.weights, this.cache, all, this.fed).logits[all.length - 1];
    this.fed += all.length;
    this.pending = null;
  }

  greedy(count: number): number[] {
    const tokens: number[] = [];
    for (let i = 0; i < count; i++) {
      if (this.pending !== null) this.feed([]);
      this.pending = argmax(this.logits);
      tokens.push(this.pending);
    }
    return tokens;
  }

  /** StreamingLLM by hand: every head keeps its first `sinks` entries and its most recent `budget - sinks`. */
  keepSinksAndRecent(sinks: number, budget: number): void {
    evictReference(
      this.cache,
      this.cache.map((layer) =>
        layer.map((entries) => entries.map((_, i) => i).filter((i) => i < sinks || i >= entries.length - (budget - sinks))),
      ),
    );
  }

  clone(): ReferenceSequence {
    const copy = new ReferenceSequence(this.weights);
    this.cache.forEach((layer, l) => layer.forEach((entries, h) => copy.cache[l][h].push(...entries)));
    copy.fed = this.fed;
    copy.pending = this.pending;
    copy.logits = this.logits;
    return copy;
  }
}

describe("decoding over gRPC after StreamingLLM eviction", () => {
  let t: TestServer;
  const weights = loadTestWeights();
  const { layers, kvHeads, headSize } = weights.config;
  /** One float32 entry of one head: key and value, then mask, attention mass and position (docs/api.md, EvictionResult). */
  const ENTRY_BYTES = (2 * headSize + 3) * 4;
  let promptTokens: number[];
  /** The reference sequence right after the prompt, before any eviction. */
  let prompted: ReferenceSequence;
  /** Greedy tokens after the prompt with the first 4 + last 12 entries per head kept. */
  let expectedAfterEviction: number[];

  const spec = (sinkTokens?: number) => EvictionSpec.fromPartial({ policy: "streaming_llm", maxTokens: BUDGET, sinkTokens });
  const uniform = (length: number) => Array.from({ length: layers }, () => ({ headLengths: Array<number>(kvHeads).fill(length), headPositions: [] }));
  const stats = async (sequenceId: string) => (await t.client.stats({ sequenceId })).sequences[0];
  const greedy = (sequenceId: string, maxNewTokens: number) => decodeAll(t.client, { sequenceId, maxNewTokens, ignoreEos: true });

  function expectEvicted(result: EvictionResult | undefined, entries: number, kvBytes: number): void {
    expect(result).toMatchObject({
      policy: "streaming_llm",
      applied: true,
      budgetTokens: BUDGET,
      entriesBefore: BigInt(layers * kvHeads * entries),
      entriesAfter: BigInt(layers * kvHeads * BUDGET),
      bytesAfter: BigInt(kvBytes),
      entryBytesBefore: BigInt(layers * kvHeads * entries * ENTRY_BYTES),
      entryBytesAfter: BigInt(layers * kvHeads * BUDGET * ENTRY_BYTES),
      kept: uniform(BUDGET),
      detail: "",
    });
    expect(result!.bytesAfter).toBeLessThan(result!.bytesBefore);
    // The room held is whole blocks per head around the entries (streaming_llm keeps no query ring):
    // 16 kept entries fill one block exactly.
    expect(result!.bytesAfter).toBe(result!.entryBytesAfter);
  }

  beforeAll(async () => {
    const model = await loadTestModel();
    t = await startTestServer(model);
    promptTokens = [model.tokenizer.bosId, ...model.tokenizer.encode(PROMPT)];
    prompted = new ReferenceSequence(weights);
    prompted.feed(promptTokens);
    const evicted = prompted.clone();
    evicted.keepSinksAndRecent(SINKS, BUDGET);
    expectedAfterEviction = evicted.greedy(NEW_TOKENS);
  });
  afterAll(() => t.close());

  it("the reference tells eviction, and positions that restart at the compacted length, apart", () => {
    expect(promptTokens.length).toBeGreaterThan(60);
    expect(prompted.clone().greedy(NEW_TOKENS)).not.toEqual(expectedAfterEviction);
    const compacted = prompted.clone();
    compacted.keepSinksAndRecent(SINKS, BUDGET);
    compacted.fed = BUDGET;
    expect(compacted.greedy(NEW_TOKENS)).not.toEqual(expectedAfterEviction);
  });

  it("Evict keeps sinks and recent entries, and Decode continues at the original positions", async () => {
    const prefill = await t.client.prefill({ sequenceId: "evict-rpc", tokenIds: [], text: PROMPT });
    expect(prefill.tokenIds).toEqual(promptTokens);
    const p = promptTokens.length;
    expect(prefill.position).toBe(p);
    expect((await stats("evict-rpc")).layers).toEqual(uniform(p));

    const { eviction } = await t.client.evict({ sequenceId: "evict-rpc", eviction: spec() });
    const after = await stats("evict-rpc");
    expectEvicted(eviction, p, Number(after.kvBytes));
    expect(eviction!.bytesBefore).toBe(prefill.kvBytes);
    expect(after).toMatchObject({ position: p, entries: BigInt(layers * kvHeads * BUDGET), layers: uniform(BUDGET) });

    const messages = await greedy("evict-rpc", NEW_TOKENS);
    expect(messages.map((m) => m.tokenId)).toEqual(expectedAfterEviction);
    expect(messages.map((m) => m.position)).toEqual(Array.from({ length: NEW_TOKENS }, (_, i) => p + i));
    // The last generated token is not fed yet: one entry per head for each of the others.
    expect(await stats("evict-rpc")).toMatchObject({ position: p + NEW_TOKENS, layers: uniform(BUDGET + NEW_TOKENS - 1) });
  });

  it("Prefill's eviction field evicts right after the prompt, with the same result", async () => {
    const prefill = await t.client.prefill({ sequenceId: "evict-prefill", tokenIds: promptTokens, text: "", eviction: spec() });
    const p = promptTokens.length;
    expect(prefill).toMatchObject({ promptTokens: p, position: p });
    expectEvicted(prefill.eviction, p, Number(prefill.kvBytes));
    expect(await stats("evict-prefill")).toMatchObject({ position: p, layers: uniform(BUDGET) });

    const messages = await greedy("evict-prefill", NEW_TOKENS);
    expect(messages.map((m) => m.tokenId)).toEqual(expectedAfterEviction);
    expect(messages.map((m) => m.position)).toEqual(Array.from({ length: NEW_TOKENS }, (_, i) => p + i));
  });

  it("evicting mid-generation keeps the unfed last token and counts positions on", async () => {
    const sinks = 8;
    const reference = prompted.clone();
    const before = reference.greedy(10);
    reference.keepSinksAndRecent(sinks, BUDGET);
    const expected = reference.greedy(20);

    await t.client.prefill({ sequenceId: "evict-mid", tokenIds: promptTokens, text: "" });
    const p = promptTokens.length;
    const first = await greedy("evict-mid", 10);
    expect(first.map((m) => m.tokenId)).toEqual(before);
    // The prompt and 9 of the 10 generated tokens are cached; the 10th is still pending.
    const { eviction } = await t.client.evict({ sequenceId: "evict-mid", eviction: spec(sinks) });
    expectEvicted(eviction, p + 9, Number((await stats("evict-mid")).kvBytes));
    expect(await stats("evict-mid")).toMatchObject({ position: p + 10, layers: uniform(BUDGET) });

    const second = await greedy("evict-mid", 20);
    expect(second.map((m) => m.tokenId)).toEqual(expected);
    expect(second.map((m) => m.position)).toEqual(Array.from({ length: 20 }, (_, i) => p + 10 + i));
  });
});
