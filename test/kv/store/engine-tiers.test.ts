import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine, type EngineModel, type EngineOptions } from "../../../src/engine/engine.js";
import { EngineError } from "../../../src/engine/engine-error.js";
import type { KvStore } from "../../../src/kv/store/kv-store.js";
import { RedisKvStore } from "../../../src/kv/store/redis-kv-store.js";
import { SnapshotStore } from "../../../src/kv/store/snapshot-store.js";
import { EngineTelemetry } from "../../../src/telemetry/engine-telemetry.js";
import { StoreMetrics } from "../../../src/telemetry/store-metrics.js";
import { loadTestModel } from "../../support/test-model.js";
import { recordSpans } from "../../telemetry/support/span-recorder.js";
import { DEFAULT_TEST_OPTIONS } from "../../support/test-server.js";
import { cacheDigests } from "../../fuzz/support/cache-digest.js";
import { startRedis, type RedisProcess } from "./support/redis-server.js";

/*
 * The engine's KV store tier in one process, on a real redis-server (docs/kv-store.md): memory
 * pressure compresses, then offloads least recently used idle sequences, then refuses; idle
 * sequences are offloaded after --offload-idle-after; a full store keeps the sequence resident.
 */

const PROMPT = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends.";
const GREEDY = { temperature: 0, topK: 0, topP: 1, seed: 0n };

async function decoded(engine: Engine, sequenceId: string): Promise<number[]> {
  const tokens: number[] = [];
  for await (const token of engine.decode({ sequenceId, maxNewTokens: 8, sampling: GREEDY, stopTokenIds: [], ignoreEos: true })) tokens.push(token.tokenId);
  return tokens;
}

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 20));
}

function residency(engine: Engine, sequenceId: string): string | undefined {
  return engine.stats().sequences.find((s) => s.sequenceId === sequenceId)?.residency;
}

async function counter(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const metric = (await registry.getSingleMetric(name)?.get())?.values ?? [];
  return metric.filter((v) => Object.entries(labels).every(([k, value]) => v.labels[k] === value)).reduce((sum, v) => sum + v.value, 0);
}

describe("the engine's KV store tier", () => {
  let redis: RedisProcess;
  let store: KvStore;
  let model: EngineModel;
  let sequenceBytes: number;
  let expected: number[];
  const registry = new Registry();
  const metrics = new StoreMetrics(registry);
  const engines: Engine[] = [];

  function engineWith(options: Partial<EngineOptions>, kvStore: KvStore | null = store, offloadIdleAfterMs?: number): Engine {
    const snapshots = new SnapshotStore({ store: kvStore ?? store, prefix: `tiers-${engines.length}`, model: "stories260K", replica: "r", leaseMs: 2_000, ttlMs: 600_000 });
    const engine = new Engine(model, { ...DEFAULT_TEST_OPTIONS, telemetry: new EngineTelemetry(metrics), ...options, kvStore: kvStore === null ? undefined : { snapshots, leaseMs: 2_000, offloadIdleAfterMs } });
    engines.push(engine);
    return engine;
  }

  beforeAll(async () => {
    [redis, model] = await Promise.all([startRedis(), loadTestModel()]);
    store = await RedisKvStore.open(redis.url);
    const reference = engineWith({}, null);
    await reference.prefill({ sequenceId: "a", text: PROMPT });
    sequenceBytes = reference.stats({ sequenceId: "a" }).sequences[0].kvBytes;
    expected = await decoded(reference, "a");
  }, 60_000);

  afterAll(async () => {
    for (const engine of engines) engine.close();
    await store?.close();
    await redis?.stop();
  });

  it("under memory pressure offloads the least recently used idle sequence instead of refusing, and restores it when named", async () => {
    const budget = { kvBudgetBytes: Math.floor(2.5 * sequenceBytes) };
    const memoryOnly = engineWith(budget, null);
    await memoryOnly.prefill({ sequenceId: "a", text: PROMPT });
    await memoryOnly.prefill({ sequenceId: "b", text: PROMPT });
    await expect(memoryOnly.prefill({ sequenceId: "c", text: PROMPT })).rejects.toMatchObject({ code: "RESOURCE_EXHAUSTED" });

    const before = await counter(registry, "kvwarden:kv_offloads_total", { reason: "pressure" });
    const tiered = engineWith(budget);
    await tiered.prefill({ sequenceId: "a", text: PROMPT });
    await tiered.prefill({ sequenceId: "b", text: PROMPT });
    await tiered.prefill({ sequenceId: "c", text: PROMPT });
    expect(residency(tiered, "a")).toBe("stored");
    expect(residency(tiered, "b")).toBe("resident");
    await until(() => tiered.stats().sequences.find((s) => s.sequenceId === "a")!.storedBytes > 0);
    expect(await counter(registry, "kvwarden:kv_offloads_total", { reason: "pressure" })).toBe(before + 1);
    // Naming "a" restores it, which offloads "b", now the least recently used.
    expect(await decoded(tiered, "a")).toEqual(expected);
    expect(residency(tiered, "a")).toBe("both");
    expect(residency(tiered, "b")).toBe("stored");
    expect(tiered.pool.used).toBeLessThanOrEqual(budget.kvBudgetBytes);
  }, 60_000);

  it("admits a restore for every byte it takes: a budget one byte short of two sequences offloads the other to restore one", async () => {
    // Admission used to ask for a restore's keys, values, mass and positions but not its mask (4 bytes a slot), so
    // with the budget short by less than that it relieved nothing and the restore ran out mid-way (docs/kv-store.md).
    const tiered = engineWith({ kvBudgetBytes: 2 * sequenceBytes - 1 });
    await tiered.prefill({ sequenceId: "a", text: PROMPT });
    await tiered.prefill({ sequenceId: "b", text: PROMPT });
    expect(residency(tiered, "a")).toBe("stored");
    expect(await decoded(tiered, "a")).toEqual(expected);
    expect(residency(tiered, "b")).toBe("stored");
    expect(tiered.pool.used).toBeLessThanOrEqual(2 * sequenceBytes - 1);
  }, 60_000);

  it("admits the query ring a Prefill's policy grows: an idle sequence is offloaded for it, or, without a store, RESOURCE_EXHAUSTED leaves the sequence as it was", async () => {
    // tova keeps one row; snapkv named in a later Prefill needs its window. The ring grew before admission
    // once, so a full budget failed mid-call with the pool's own error instead of relieving or refusing.
    const tova = { policy: "tova", budget: { maxTokens: 1000 }, params: {} };
    const snapkv = { policy: "snapkv", budget: { maxTokens: 1000 }, params: {} };
    const sizing = engineWith({}, null);
    await sizing.prefill({ sequenceId: "a", text: PROMPT, eviction: tova });
    const oneRowBytes = sizing.stats({ sequenceId: "a" }).sequences[0].kvBytes;
    const budget = { kvBudgetBytes: oneRowBytes + sequenceBytes + 100 };

    const memoryOnly = engineWith(budget, null);
    await memoryOnly.prefill({ sequenceId: "a", text: PROMPT, eviction: tova });
    await memoryOnly.prefill({ sequenceId: "b", text: PROMPT });
    const before = cacheDigests(memoryOnly).get("\u0000a");
    await expect(memoryOnly.prefill({ sequenceId: "a", text: " And then", eviction: snapkv })).rejects.toMatchObject({ code: "RESOURCE_EXHAUSTED", message: expect.stringContaining("KV budget exhausted") });
    expect(cacheDigests(memoryOnly).get("\u0000a")).toEqual(before);
    expect(memoryOnly.stats({ sequenceId: "a" }).sequences[0].kvBytes).toBe(oneRowBytes);

    const tiered = engineWith(budget);
    await tiered.prefill({ sequenceId: "a", text: PROMPT, eviction: tova });
    await tiered.prefill({ sequenceId: "b", text: PROMPT });
    await tiered.prefill({ sequenceId: "a", text: " And then", eviction: snapkv });
    expect(residency(tiered, "a")).toBe("resident");
    expect(residency(tiered, "b")).toBe("stored");
    expect(tiered.pool.used).toBeLessThanOrEqual(budget.kvBudgetBytes);
  }, 60_000);

  it("without a store, Offload is FAILED_PRECONDITION naming --kv-store, and the sequence stays", async () => {
    const memoryOnly = engineWith({}, null);
    await memoryOnly.prefill({ sequenceId: "a", text: PROMPT });
    await expect(memoryOnly.offload("a")).rejects.toMatchObject({ code: "FAILED_PRECONDITION", message: expect.stringContaining("--kv-store") });
    expect(await decoded(memoryOnly, "a")).toEqual(expected);
  }, 60_000);

  it("refuses with RESOURCE_EXHAUSTED, offloading nothing, when even offloading every idle sequence cannot free enough", async () => {
    const tiered = engineWith({ kvBudgetBytes: Math.floor(1.5 * sequenceBytes) });
    await tiered.prefill({ sequenceId: "a", text: PROMPT });
    const long = `${PROMPT} ${PROMPT} ${PROMPT} ${PROMPT}`;
    await expect(tiered.prefill({ sequenceId: "long", text: long })).rejects.toMatchObject({ code: "RESOURCE_EXHAUSTED" });
    expect(tiered.stats().sequences.map((s) => [s.sequenceId, s.residency])).toEqual([["a", "resident"]]);
  }, 60_000);

  it("offloads sequences idle for --offload-idle-after, and continues them", async () => {
    const before = await counter(registry, "kvwarden:kv_offloads_total", { reason: "idle" });
    const tiered = engineWith({}, store, 200);
    await tiered.prefill({ sequenceId: "a", text: PROMPT });
    await until(() => residency(tiered, "a") === "stored");
    expect(tiered.pool.used).toBe(0);
    expect(await counter(registry, "kvwarden:kv_offloads_total", { reason: "idle" })).toBe(before + 1);
    expect(await decoded(tiered, "a")).toEqual(expected);
  }, 60_000);

  it("traces an explicit offload and the restore a Decode makes, with reason, bytes and chunks", async () => {
    const recorder = recordSpans();
    try {
      const tiered = engineWith({});
      await tiered.prefill({ sequenceId: "traced", text: PROMPT });
      const offload = await tiered.offload("traced");
      expect(await decoded(tiered, "traced")).toEqual(expected);
      const spans = recorder.exporter.getFinishedSpans().filter((span) => span.name.startsWith("kvwarden.offload") || span.name.startsWith("kvwarden.restore"));
      expect(spans.map((span) => [span.name, span.attributes["kvwarden.store.reason"], span.attributes["kvwarden.store.bytes"], span.attributes["kvwarden.store.chunks"]])).toEqual([
        ["kvwarden.offload", "explicit", offload.storedBytes, offload.chunks],
        ["kvwarden.restore", "explicit", offload.storedBytes, offload.chunks],
      ]);
      for (const span of spans) expect(span.attributes["kvwarden.sequence.id"]).toBe("traced");
    } finally {
      await recorder.stop();
    }
  }, 60_000);

  it("a full store (maxmemory, noeviction) keeps the sequence resident and usable, and counts it", async () => {
    const small = await startRedis(["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"]);
    const full = await RedisKvStore.open(small.url);
    try {
      const tiered = engineWith({}, full);
      const before = await counter(registry, "kvwarden:kv_store_errors_total", { operation: "offload", code: "RESOURCE_EXHAUSTED" });
      let refused: { id: string; error: unknown } | undefined;
      for (let i = 0; i < 200 && !refused; i++) {
        const id = `filler-${i}`;
        await tiered.prefill({ sequenceId: id, text: PROMPT });
        await tiered.offload(id).catch((error: unknown) => (refused = { id, error }));
      }
      expect(refused?.error).toMatchObject({ code: "RESOURCE_EXHAUSTED", message: expect.stringMatching(/is full/) });
      expect(refused!.error).not.toBeInstanceOf(EngineError);
      const left = tiered.stats({ sequenceId: refused!.id }).sequences[0];
      expect(left).toMatchObject({ residency: "resident", kvBytes: sequenceBytes });
      expect(await decoded(tiered, refused!.id)).toEqual(expected);
      expect(await counter(registry, "kvwarden:kv_store_errors_total", { operation: "offload", code: "RESOURCE_EXHAUSTED" })).toBe(before + 1);
    } finally {
      await full.close();
      await small.stop();
    }
  }, 120_000);
});
