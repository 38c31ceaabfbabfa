import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BLOCK_TOKENS, floatsPerEntry } from "../../src/kv/layer-cache.js";
import { loadTestModel, REFERENCE_TEXT } from "../support/test-model.js";
import { decodeAll, startTestServer, statusOf, type TestServer } from "../support/test-server.js";

const RECENT_QUERY_ROWS = 64;
const SNAPKV_WINDOW = 16;

/**
 * A sequence keeps the recent queries only the policy named for it reads (docs/policies.md, "Recent
 * queries"): none for streaming_llm, the window for snapkv, the server's --recent-queries before any
 * policy is named. Stats' kv_bytes is the slabs plus that ring, so the ring's bytes show through it.
 */
describe("the recent-query ring follows the sequence's policy", () => {
  let t: TestServer;
  let prompt: number[];
  const model = loadTestModel();

  beforeAll(async () => {
    t = await startTestServer(await model, { recentQueryRows: RECENT_QUERY_ROWS });
    const { tokenIds } = await t.client.prefill({ sequenceId: "tokenize", text: REFERENCE_TEXT });
    await t.client.release("tokenize");
    prompt = tokenIds.slice(0, 120);
  });
  afterAll(() => t?.close());

  /** Bytes of the ring: what Stats reports over the slabs of the heads' entries (whole blocks). */
  async function ringBytes(sequenceId: string): Promise<number> {
    const { config } = await model;
    const [stats] = (await t.client.stats({ sequenceId })).sequences;
    const entryBytes = floatsPerEntry({ kvHeads: config.kvHeads, headSize: config.headSize }) * 4;
    const slabs = stats.layers.flatMap((layer) => layer.headLengths).reduce((sum, n) => sum + Math.ceil(n / BLOCK_TOKENS) * BLOCK_TOKENS * entryBytes, 0);
    return Number(stats.kvBytes) - slabs;
  }

  /** The original positions each head keeps. */
  async function kept(sequenceId: string): Promise<number[][][]> {
    const [stats] = (await t.client.stats({ sequenceId, includePositions: true })).sequences;
    return stats.layers.map((layer) => layer.headPositions.map((head) => head.positions));
  }

  /** What a refused call must leave as it was: kept positions, tokens and bytes. */
  async function state(sequenceId: string) {
    const [stats] = (await t.client.stats({ sequenceId, includePositions: true, includeTokenIds: true })).sequences;
    return { layers: stats.layers, tokenIds: stats.tokenIds, kvBytes: stats.kvBytes, position: stats.position };
  }

  /** (layers · heads · rows · headSize + rows) float32s: the ring as src/kv/recent-queries.ts lays it out. */
  async function ringOf(rows: number): Promise<number> {
    const { config } = await model;
    return rows === 0 ? 0 : (config.layers * config.heads * rows * config.headSize + rows) * 4;
  }

  it("keeps --recent-queries rows before a policy is named, the window for snapkv, none for streaming_llm", async () => {
    await t.client.prefill({ sequenceId: "plain", tokenIds: prompt });
    expect(await ringBytes("plain")).toBe(await ringOf(RECENT_QUERY_ROWS));

    await t.client.prefill({ sequenceId: "snap", tokenIds: prompt, eviction: { policy: "snapkv", maxTokens: 48, window: SNAPKV_WINDOW } });
    expect(await ringBytes("snap")).toBe(await ringOf(SNAPKV_WINDOW));

    await t.client.prefill({ sequenceId: "stream", tokenIds: prompt, eviction: { policy: "streaming_llm", maxTokens: 48 } });
    expect(await ringBytes("stream")).toBe(0);

    // An Evict names a policy too: the plain sequence gives its ring back after streaming_llm.
    await t.client.evict({ sequenceId: "plain", eviction: { policy: "streaming_llm", maxTokens: 48 } });
    expect(await ringBytes("plain")).toBe(0);
  });

  it("selects the same entries with the window-sized ring as with the full one", async () => {
    const eviction = { policy: "snapkv", maxTokens: 40, window: SNAPKV_WINDOW };
    await t.client.prefill({ sequenceId: "full", tokenIds: prompt });
    await t.client.evict({ sequenceId: "full", eviction });
    await t.client.prefill({ sequenceId: "sized", tokenIds: prompt, eviction });
    const [full, sized] = await Promise.all(["full", "sized"].map((sequenceId) => kept(sequenceId)));
    expect(sized).toEqual(full);
    const [a, b] = await Promise.all(["full", "sized"].map((sequenceId) => decodeAll(t.client, { sequenceId, maxNewTokens: 20, ignoreEos: true })));
    expect(b.map((r) => r.tokenId)).toEqual(a.map((r) => r.tokenId));
  });

  it("refuses a later policy that reads queries the sequence did not keep, and leaves the sequence as it was", async () => {
    await t.client.prefill({ sequenceId: "kept-none", tokenIds: prompt, eviction: { policy: "streaming_llm", maxTokens: 100 } });
    const before = await state("kept-none");
    const evict = await statusOf(t.client.evict({ sequenceId: "kept-none", eviction: { policy: "snapkv", maxTokens: 40, window: SNAPKV_WINDOW } }));
    expect(evict.code).toBe(status.INVALID_ARGUMENT);
    expect(evict.details).toContain(`policy 'snapkv' reads the queries of the last ${SNAPKV_WINDOW} tokens, but sequence 'kept-none' keeps 0`);
    const decode = await statusOf(decodeAll(t.client, { sequenceId: "kept-none", maxNewTokens: 4, eviction: { policy: "tova", maxTokens: 40 } }));
    expect(decode.code).toBe(status.INVALID_ARGUMENT);
    expect(decode.details).toContain("policy 'tova' reads the queries of the last 1 tokens, but sequence 'kept-none' keeps 0");
    expect(await state("kept-none")).toEqual(before);
    // Policies that read no queries still run.
    const h2o = await t.client.evict({ sequenceId: "kept-none", eviction: { policy: "h2o", maxTokens: 40 } });
    expect(h2o.eviction?.entriesAfter).toBeGreaterThan(0);
  });
});
