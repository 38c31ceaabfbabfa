import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EngineModel } from "../../src/engine/engine.js";
import { LayerCache } from "../../src/kv/layer-cache.js";
import { SlabPool } from "../../src/kv/slab-pool.js";
import { loadModel } from "../../src/model/load-model.js";
import { argmax } from "../reference/llama-forward.js";
import { loadTestModel, MODEL_FILES, REFERENCE_FIRST_TOKENS, REFERENCE_TEXT } from "../support/test-model.js";
import { decodeAll, startTestServer, statusOf, type TestServer } from "../support/test-server.js";

const RECENT_QUERY_ROWS = 64;

describe("float16 KV store", () => {
  let fp32: EngineModel;
  let fp16: EngineModel;
  let servers: { fp32: TestServer; fp16: TestServer };
  let prompt: number[];

  beforeAll(async () => {
    [fp32, fp16] = await Promise.all([
      loadTestModel(),
      loadModel(MODEL_FILES, { executionProvider: "cpu", intraOpThreads: 1, kvDtype: "float16" }),
    ]);
    const options = { recentQueryRows: RECENT_QUERY_ROWS };
    servers = { fp32: await startTestServer(fp32, options), fp16: await startTestServer(fp16, options) };
    prompt = [1, ...fp32.tokenizer.encode(REFERENCE_TEXT)].slice(0, 100);
  });
  afterAll(async () => {
    await Promise.all([servers?.fp32.close(), servers?.fp16.close()]);
    await Promise.all([fp32?.runner.release(), fp16?.runner.release()]);
  });

  it("keeps float16 bits and decodes them for policies, until the cache changes", () => {
    const layer = new LayerCache(new SlabPool(1 << 20), { kvHeads: 2, headSize: 2, kvDtype: "float16" });
    layer.reserve(2);
    // [Hkv=2, count=2, d=2] as float16 bits: 1, 2, 0.5, -1 | 3, 0.25, -2, 65504
    const bits = Uint16Array.of(0x3c00, 0x4000, 0x3800, 0xbc00, 0x4200, 0x3400, 0xc000, 0x7bff);
    layer.append(bits, bits, 0, 2, 0);
    expect(layer.keyStore).toBeInstanceOf(Uint16Array);
    const at = (h: number, slot: number) => Array.from(layer.keys.subarray((layer.offsets[h] + slot) * 2, (layer.offsets[h] + slot + 1) * 2));
    expect([at(0, 0), at(0, 1), at(1, 0), at(1, 1)]).toEqual([[1, 2], [0.5, -1], [3, 0.25], [-2, 65504]]);
    layer.retain([Int32Array.of(1), Int32Array.of(0)]);
    expect([at(0, 0), at(1, 0)]).toEqual([[0.5, -1], [3, 0.25]]);
    expect(() => layer.append(new Float32Array(8), new Float32Array(8), 0, 2, 2)).toThrow(/holds float16 keys and values; got float32/);
  });

  it("halves the K/V and recent-query bytes exactly in Stats and in the budget", async () => {
    const { layers, kvHeads, heads, headSize: d } = fp32.config;
    const bytes = async (t: TestServer) => {
      await t.client.prefill({ sequenceId: "bytes", tokenIds: prompt });
      const stats = await t.client.stats({ sequenceId: "bytes" });
      expect(stats.kvBytesUsed).toBe(stats.sequences[0].kvBytes);
      return Number(stats.sequences[0].kvBytes);
    };
    const [bytes32, bytes16] = [await bytes(servers.fp32), await bytes(servers.fp16)];
    // Each sequence also holds its recent queries, in the KV dtype: [L, Hq, rows, d] and the rows' positions (4 bytes each).
    const queries32 = RECENT_QUERY_ROWS * layers * heads * d * 4;
    const ring32 = queries32 + RECENT_QUERY_ROWS * 4;
    // Per entry of a KV head: key and value, then mask, attention mass and position (4 bytes each).
    const capacity = (bytes32 - ring32) / (layers * kvHeads * (2 * d + 3) * 4);
    expect(Number.isInteger(capacity) && capacity >= prompt.length).toBe(true);
    const keysAndValues32 = layers * kvHeads * capacity * 2 * d * 4;
    expect(bytes16).toBe(bytes32 - keysAndValues32 / 2 - queries32 / 2);
    console.log(`${prompt.length} tokens: ${bytes32} bytes with float32 K/V, ${bytes16} with float16 (K/V ${keysAndValues32} -> ${keysAndValues32 / 2}, queries ${queries32} -> ${queries32 / 2})`);

    // A budget that holds the float16 sequence but not the float32 one.
    const budget = { kvBudgetBytes: bytes16 };
    const tight = { fp32: await startTestServer(fp32, { ...budget, recentQueryRows: RECENT_QUERY_ROWS }), fp16: await startTestServer(fp16, { ...budget, recentQueryRows: RECENT_QUERY_ROWS }) };
    try {
      expect((await statusOf(tight.fp32.client.prefill({ sequenceId: "tight", tokenIds: prompt }))).details).toMatch(/KV budget/);
      expect((await tight.fp16.client.prefill({ sequenceId: "tight", tokenIds: prompt })).kvBytes).toBe(BigInt(bytes16));
    } finally {
      await Promise.all([tight.fp32.close(), tight.fp16.close()]);
    }
  });

  it("decodes close to float32: teacher-forced logits and the greedy sample", async () => {
    const pool = new SlabPool(64 * 1024 * 1024);
    const { layers, kvHeads, headSize } = fp32.config;
    const caches = {
      fp32: Array.from({ length: layers }, () => new LayerCache(pool, { kvHeads, headSize })),
      fp16: Array.from({ length: layers }, () => new LayerCache(pool, { kvHeads, headSize, kvDtype: "float16" })),
    };
    let worst = 0;
    let fed = 0;
    let next = 1;
    // Both follow float32's greedy tokens, so their logits stay comparable over the whole story.
    for (let step = 0; step < 200; step++) {
      const [out32, out16] = await Promise.all(
        ([["fp32", fp32], ["fp16", fp16]] as const).map(async ([which, model]) => {
          for (const layer of caches[which]) layer.reserve(1);
          const out = await model.runner.run({ tokens: [next], firstPosition: fed, past: caches[which], queryRows: 1 });
          caches[which].forEach((layer, l) => layer.append(out.newKeys, out.newValues, l * kvHeads * headSize, 1, fed, out.attentionColsums[l]));
          return out;
        }),
      );
      out32.logits.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - out16.logits[i]))));
      fed++;
      next = argmax(out32.logits);
    }
    const greedy16 = await decodeSample(servers.fp16);
    const greedy32 = await decodeSample(servers.fp32);
    const agree = greedy16.findIndex((token, i) => token !== greedy32[i]);
    console.log(`float16 vs float32 KV over 200 teacher-forced steps: max |logit difference| ${worst.toExponential(2)}; greedy samples agree for ${agree < 0 ? greedy16.length : agree} of ${greedy16.length} tokens`);
    expect(worst).toBeLessThan(0.05);
    expect(greedy16.slice(0, 20)).toEqual(REFERENCE_FIRST_TOKENS);
  });

  it("runs the policies on decoded keys, keeping (nearly) what float32 keeps", async () => {
    const overlaps: string[] = [];
    for (const policy of ["snapkv", "pyramidkv", "adakv", "knorm", "h2o", "tova", "nacl", "streaming_llm"]) {
      const kept = async (t: TestServer) => {
        const id = `evict-${policy}`;
        await t.client.prefill({ sequenceId: id, tokenIds: prompt });
        await t.client.evict({ sequenceId: id, eviction: { policy, maxTokens: 40, seed: 7n } });
        const stats = await t.client.stats({ sequenceId: id, includePositions: true });
        const next = await decodeAll(t.client, { sequenceId: id, maxNewTokens: 3 });
        return { positions: stats.sequences[0].layers.map((l) => l.headPositions.map((h) => h.positions)), next: next.map((m) => m.tokenId) };
      };
      const [k32, k16] = [await kept(servers.fp32), await kept(servers.fp16)];
      // Rounding keys to float16 may swap near-tied entries (key norms, scores) at the budget's edge.
      const heads32 = k32.positions.flat();
      const same = k16.positions.flat().reduce((n, positions, i) => n + positions.filter((p) => heads32[i].includes(p)).length, 0);
      const share = same / heads32.flat().length;
      overlaps.push(`${policy} ${(100 * share).toFixed(1)}%`);
      expect(share, policy).toBeGreaterThan(0.95);
      expect(k16.next, policy).toHaveLength(3);
    }
    console.log(`entries kept by both float16 and float32 KV: ${overlaps.join(", ")}`);
  });

  it("reports its KV dtype in Info", async () => {
    const info = await servers.fp16.client.info();
    expect(info.model).toMatchObject({ architecture: "llama2c", dtype: "float32", kvDtype: "float16" });
  });
});

async function decodeSample(t: TestServer): Promise<number[]> {
  await t.client.prefill({ sequenceId: "sample", tokenIds: [1] });
  return (await decodeAll(t.client, { sequenceId: "sample", maxNewTokens: 200 })).map((m) => m.tokenId);
}
