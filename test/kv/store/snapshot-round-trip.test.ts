import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine, type EngineModel } from "../../../src/engine/engine.js";
import type { EvictionSpec } from "../../../src/policies/policy.js";
import { RedisKvStore } from "../../../src/kv/store/redis-kv-store.js";
import { restoredBytes } from "../../../src/kv/store/sequence-snapshot.js";
import { SnapshotStore } from "../../../src/kv/store/snapshot-store.js";
import { cacheDigests } from "../../fuzz/support/cache-digest.js";
import { loadModel } from "../../../src/model/load-model.js";
import { loadTestModel, MODEL_FILES } from "../../support/test-model.js";
import { DEFAULT_TEST_OPTIONS } from "../../support/test-server.js";
import { startRedis, type RedisProcess } from "./support/redis-server.js";

// A restored sequence must continue exactly as one that never left memory (docs/kv-store.md,
// "What a snapshot holds"): same tokens, logits equal bit for bit, the same cache after every step.

const GREEDY = { temperature: 0, topK: 0, topP: 1, seed: 0n };
const SAMPLED = { temperature: 0.9, topK: 40, topP: 0.95, seed: 7n };
const PROMPT = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends, and one day she saw a big red ball. She wanted to play with it, but it was too high. Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and did not know what to do.";

const spec = (policy: string, maxTokens: number): EvictionSpec => ({ policy, budget: { maxTokens }, params: {} });

async function decodeOne(engine: Engine, sequenceId: string, sampling = GREEDY, eviction?: EvictionSpec): Promise<number> {
  const tokens: number[] = [];
  for await (const t of engine.decode({ sequenceId, maxNewTokens: 1, sampling, stopTokenIds: [], ignoreEos: true, eviction })) tokens.push(t.tokenId);
  return tokens[0];
}

const bits = (array: Float32Array | null) => (array ? Buffer.from(array.buffer, array.byteOffset, array.byteLength).toString("hex") : null);

describe("a sequence snapshot, stored in Redis and restored into another engine", () => {
  let model: EngineModel;
  let float16Model: EngineModel;
  let redis: RedisProcess;
  let store: RedisKvStore;
  let snapshots: SnapshotStore;

  beforeAll(async () => {
    [model, float16Model, redis] = await Promise.all([
      loadTestModel(),
      loadModel(MODEL_FILES, { executionProvider: "cpu", intraOpThreads: 1, kvDtype: "float16" }),
      startRedis(),
    ]);
    store = await RedisKvStore.open(redis.url);
    // Small chunks, so that a snapshot of stories260K spans many of them.
    snapshots = new SnapshotStore({ store, prefix: "kvw-test", model: "stories260k", replica: "replica-a", leaseMs: 60_000, ttlMs: 600_000, chunkBytes: 16_384 });
  });
  afterAll(async () => {
    await store?.close();
    await redis?.stop();
  });

  const cases: { name: string; prefill?: EvictionSpec; evict?: EvictionSpec; decodeBudget?: EvictionSpec; sampling?: typeof GREEDY; float16?: boolean; ringHeld?: boolean }[] = [
    { name: "snapkv at prefill", prefill: spec("snapkv", 40) },
    { name: "adakv (ragged heads) by Evict", evict: spec("adakv", 40) },
    { name: "h2o with a standing decode budget, sampled", decodeBudget: spec("h2o", 40), sampling: SAMPLED },
    { name: "snapkv then an h2o decode budget, keys and values in float16", prefill: spec("snapkv", 48), decodeBudget: spec("h2o", 40), float16: true },
    { name: "a snapkv decode budget, keys, values and recent queries in float16", decodeBudget: spec("snapkv", 40), float16: true, ringHeld: true },
  ];

  for (const c of cases) {
    it(`continues bit for bit after ${c.name}`, async () => {
      const chosen = c.float16 ? float16Model : model;
      const original = new Engine(chosen, DEFAULT_TEST_OPTIONS);
      const restored = new Engine(chosen, DEFAULT_TEST_OPTIONS);
      const sampling = c.sampling ?? GREEDY;
      try {
        await original.prefill({ sequenceId: "s", text: PROMPT, eviction: c.prefill });
        if (c.evict) await original.evict("s", c.evict);
        // Decoded under the budget for a while: a pending token, evictions by the budget, a ring of recent queries.
        for (let i = 0; i < 6; i++) await decodeOne(original, "s", sampling, i === 0 ? c.decodeBudget : undefined);

        const lease = await snapshots.acquire("", `s-${c.name}`);
        const saved = await snapshots.save(lease, (await original.snapshot("s")));
        expect(saved.chunks).toBeGreaterThan(1);
        const loaded = (await snapshots.load("", `s-${c.name}`))!;
        await restored.restore("s", loaded.snapshot);
        // What admission asked for the restore is what it holds (docs/kv-store.md, "Capacity under one budget").
        expect(restored.stats({ sequenceId: "s" }).sequences[0].kvBytes).toBe(restoredBytes(loaded.snapshot));
        // The loaded arrays are views of read buffers: given back, the next save encodes into them; the restored sequence holds copies.
        loaded.done();
        await snapshots.save(await snapshots.acquire("", `other-${c.name}`), await restored.snapshot("s"));

        const before = original.stats({ sequenceId: "s" }).sequences[0];
        expect((await original.snapshot("s")).shape.kvDtype).toBe(c.float16 ? "float16" : "float32");
        expect(Math.max(...before.headLengths.flat())).toBeLessThan(before.position - 1); // the policy really evicted
        if (c.decodeBudget) expect(restored.stats({ sequenceId: "s" }).sequences[0].decodeBudgetTokens).toBe(40);
        expect(cacheDigests(restored).get("\u0000s")).toEqual(cacheDigests(original).get("\u0000s"));
        // The recent-query ring as held (float16 bits for a float16 sequence), not only as policies read it.
        const ring = (await original.snapshot("s")).recentQueries;
        if (c.ringHeld) expect(ring.count).toBeGreaterThan(0);
        expect(bits((await restored.snapshot("s")).recentQueries.slab)).toBe(bits(ring.slab));
        for (let step = 0; step < 30; step++) {
          const expected = await decodeOne(original, "s", sampling);
          expect(await decodeOne(restored, "s", sampling)).toBe(expected);
          expect(bits((await restored.snapshot("s")).lastLogits)).toBe(bits((await original.snapshot("s")).lastLogits));
          expect(cacheDigests(restored).get("\u0000s")).toEqual(cacheDigests(original).get("\u0000s"));
          expect(bits((await restored.snapshot("s")).recentQueries.slab)).toBe(bits((await original.snapshot("s")).recentQueries.slab));
        }
        expect(restored.stats({ sequenceId: "s" }).sequences[0]).toMatchObject({ ...original.stats({ sequenceId: "s" }).sequences[0], idleMs: expect.any(Number) });
      } finally {
        original.close();
        restored.close();
      }
    }, 60_000);
  }
});
