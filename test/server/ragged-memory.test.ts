import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BLOCK_TOKENS, floatsPerEntry } from "../../src/kv/layer-cache.js";
import { loadTestModel, REFERENCE_TEXT } from "../support/test-model.js";
import { decodeAll, startTestServer, type TestServer } from "../support/test-server.js";

const PROMPT_TOKENS = 301;
const BUDGET = 96;

/**
 * AdaKV leaves each KV head its own number of entries; between requests each
 * head holds only the room its entries need (whole blocks), so memory follows
 * the entries kept, not the longest head.
 */
describe("ragged heads hold memory in proportion to their entries", () => {
  let t: TestServer;
  let prompt: number[];
  const model = loadTestModel();

  beforeAll(async () => {
    t = await startTestServer(await model);
    const text = `${REFERENCE_TEXT}\n${REFERENCE_TEXT}`;
    const { tokenIds } = await t.client.prefill({ sequenceId: "tokenize", text });
    await t.client.release("tokenize");
    prompt = tokenIds.slice(0, PROMPT_TOKENS);
    expect(prompt).toHaveLength(PROMPT_TOKENS);
  });
  afterAll(() => t?.close());

  /** Slab bytes for the heads' lengths: each head's entries rounded up to whole blocks. */
  async function expectedBytes(sequenceId: string): Promise<{ bytes: number; ringBytes: number; entries: number; lengths: number[][] }> {
    const { config } = await model;
    const [stats] = (await t.client.stats({ sequenceId })).sequences;
    const lengths = stats.layers.map((layer) => layer.headLengths);
    const entryBytes = floatsPerEntry({ kvHeads: config.kvHeads, headSize: config.headSize }) * 4;
    const slabBytes = lengths.flat().reduce((sum, n) => sum + Math.ceil(n / BLOCK_TOKENS) * BLOCK_TOKENS * entryBytes, 0);
    return { bytes: Number(stats.kvBytes), ringBytes: Number(stats.kvBytes) - slabBytes, entries: Number(stats.entries), lengths };
  }

  it("after an AdaKV eviction at Prefill, and again after decoding", async () => {
    const { config } = await model;
    const prefill = await t.client.prefill({
      sequenceId: "ada",
      tokenIds: prompt,
      eviction: { policy: "adakv", maxTokens: BUDGET },
    });
    const evicted = await expectedBytes("ada");
    // AdaKV's budget is per layer: the mean head keeps at most BUDGET entries.
    expect(evicted.entries).toBeLessThanOrEqual(config.layers * config.kvHeads * BUDGET);
    expect(evicted.entries).toBeGreaterThan(config.layers * config.kvHeads * (BUDGET - BLOCK_TOKENS));
    // The heads really differ, and the one slab per layer would otherwise be sized by the longest.
    expect(evicted.lengths.some((heads) => new Set(heads).size > 1)).toBe(true);
    expect(Number(prefill.kvBytes)).toBe(evicted.bytes);
    console.log(`adakv ${BUDGET} on ${PROMPT_TOKENS} tokens: ${evicted.entries} entries, ${evicted.bytes - evicted.ringBytes} slab bytes, ${evicted.ringBytes} ring bytes; lengths ${JSON.stringify(evicted.lengths)}`);

    // What is left over the slabs is the recent-query ring: the rows of adakv's window (32 by default);
    // a sequence no policy was named for keeps the server's --recent-queries (64).
    const { kvBytes: plainBytes } = await t.client.prefill({ sequenceId: "plain", tokenIds: prompt.slice(0, 16) });
    const plain = await expectedBytes("plain");
    expect(Number(plainBytes)).toBe(plain.bytes);
    const rowBytes = (config.layers * config.heads * config.headSize + 1) * 4;
    expect(plain.ringBytes).toBe(64 * rowBytes);
    expect(evicted.ringBytes).toBe(32 * rowBytes);

    // Decoding pads the heads to one room (the step graph reads [Hkv, C, d]); the end of the call gives it back.
    await decodeAll(t.client, { sequenceId: "ada", maxNewTokens: 5, ignoreEos: true });
    const decoded = await expectedBytes("ada");
    // Five tokens out, four fed: the last waits to be fed by the next step.
    expect(decoded.entries).toBe(evicted.entries + 4 * config.layers * config.kvHeads);
    expect(decoded.ringBytes).toBe(evicted.ringBytes);
  });
});
