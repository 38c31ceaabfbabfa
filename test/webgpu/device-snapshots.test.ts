import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine, type EngineModel, type EngineOptions } from "../../src/engine/engine.js";
import { FileKvStore } from "../../src/kv/store/file-kv-store.js";
import type { KvStore } from "../../src/kv/store/kv-store.js";
import { RedisKvStore } from "../../src/kv/store/redis-kv-store.js";
import { SnapshotStore } from "../../src/kv/store/snapshot-store.js";
import { loadModel } from "../../src/model/load-model.js";
import type { EvictionSpec } from "../../src/policies/policy.js";
import { startRedis, type RedisProcess } from "../kv/store/support/redis-server.js";
import { DEFAULT_TEST_OPTIONS } from "../support/test-server.js";
import { loadTestModel, MODEL_FILES } from "../support/test-model.js";

/*
 * A device-resident sequence (--execution-provider webgpu) offloaded to a real store and restored
 * transparently continues exactly as a copy that never left the device: the same tokens, and the
 * logits after every step equal bit for bit (docs/kv-store.md, docs/webgpu.md). Under memory
 * pressure an idle one is written back to the store and leaves the device instead of a refusal.
 */

const GREEDY = { temperature: 0, topK: 0, topP: 1, seed: 0n };
const PROMPT = Array.from({ length: 90 }, (_, i) => (i === 0 ? 1 : 3 + ((i * 53) % 400)));
const spec = (policy: string, maxTokens: number, params: Record<string, number> = {}): EvictionSpec => ({ policy, budget: { maxTokens }, params });

// Skipped cleanly where onnxruntime finds no WebGPU adapter (docs/webgpu.md says how to install lavapipe).
const gpu: EngineModel | null = await loadModel(MODEL_FILES, { executionProvider: "webgpu", intraOpThreads: 1 }).catch(() => null);
const bits = (array: Float32Array | null) => (array ? Buffer.from(array.buffer, array.byteOffset, array.byteLength).toString("hex") : null);

/** Decodes `steps` tokens one call at a time; after each, the token and the last logits' bits. */
async function stepsOf(engine: Engine, sequenceId: string, steps: number, eviction?: EvictionSpec): Promise<string[]> {
  const seen: string[] = [];
  for (let i = 0; i < steps; i++) {
    const tokens: number[] = [];
    for await (const t of engine.decode({ sequenceId, maxNewTokens: 1, sampling: GREEDY, stopTokenIds: [], ignoreEos: true, eviction: i === 0 ? eviction : undefined })) tokens.push(t.tokenId);
    seen.push(`${tokens.join()}:${bits((await engine.snapshot(sequenceId)).lastLogits)}`);
  }
  return seen;
}

describe.skipIf(!gpu)("snapshots of a device-resident cache", () => {
  let redis: RedisProcess;
  let folder: string;
  const stores: KvStore[] = [];
  const engines: Engine[] = [];

  function engineOn(store: KvStore | null, prefix: string, { offloadIdleAfterMs, ...options }: Partial<EngineOptions> & { offloadIdleAfterMs?: number } = {}): Engine {
    // A long lease: the device path runs on the event loop, and a cold first run (shaders compiled) can hold it past a short one's renewal.
    const snapshots = store && new SnapshotStore({ store, prefix, model: "stories260K", replica: "r", leaseMs: 30_000, ttlMs: 600_000 });
    const engine = new Engine(gpu!, { ...DEFAULT_TEST_OPTIONS, ...options, kvStore: snapshots ? { snapshots, leaseMs: 30_000, offloadIdleAfterMs } : undefined });
    engines.push(engine);
    return engine;
  }

  const listed = (engine: Engine, sequenceId: string) => engine.stats().sequences.find((s) => s.sequenceId === sequenceId);

  beforeAll(async () => {
    redis = await startRedis();
    stores.push(await RedisKvStore.open(redis.url));
    folder = await mkdtemp(join(tmpdir(), "kvw-device-snapshots-"));
    stores.push(await FileKvStore.open(pathToFileURL(folder).href));
  });

  afterAll(async () => {
    for (const engine of engines) engine.close();
    for (const store of stores) await store.close();
    await redis?.stop();
    if (folder) await rm(folder, { recursive: true, force: true });
    await gpu?.runner.release();
  });

  const cases: { policy: string; evict: EvictionSpec; budget?: EvictionSpec }[] = [
    { policy: "snapkv", evict: spec("snapkv", 48, { window: 8 }) },
    { policy: "adakv", evict: spec("adakv", 48, { window: 8 }) },
    { policy: "h2o", evict: spec("h2o", 56), budget: spec("h2o", 48) },
  ];

  for (const c of cases) {
    it(`${c.policy}: prefill, evict, Offload, then decode after a transparent restore equals a fork that never left the device (redis)`, async () => {
      const engine = engineOn(stores[0], `device-${c.policy}`);
      await engine.prefill({ sequenceId: "s", tokenIds: PROMPT });
      await engine.evict("s", c.evict);
      await engine.fork("s", "kept");
      const offloaded = await engine.offload("s");
      expect(offloaded.storedBytes).toBeGreaterThan(0);
      expect(engine.stats().sequences.find((s) => s.sequenceId === "s")?.residency).toBe("stored");
      expect(engine.stats().kvBytesDevice).toBe(engine.stats({ sequenceId: "kept" }).sequences[0].kvBytesDevice);

      const restored = await stepsOf(engine, "s", 6, c.budget);
      const kept = await stepsOf(engine, "kept", 6, c.budget);
      expect(restored).toEqual(kept);
      expect(engine.stats({ sequenceId: "s" }).sequences[0].headLengths).toEqual(engine.stats({ sequenceId: "kept" }).sequences[0].headLengths);
    });
  }

  it("restores from a file:// store into a second engine, and SIGTERM's offloadAll offloads device sequences", async () => {
    const first = engineOn(stores[1], "device-file");
    await first.prefill({ sequenceId: "s", tokenIds: PROMPT, eviction: spec("streaming_llm", 48) });
    await first.fork("s", "kept");
    expect(await first.offloadAll(Date.now() + 60_000)).toEqual({ offloaded: 2, failed: 0 });
    expect(first.stats().kvBytesDevice).toBe(0);

    const second = engineOn(stores[1], "device-file");
    const reference = new Engine(gpu!, DEFAULT_TEST_OPTIONS);
    engines.push(reference);
    await reference.prefill({ sequenceId: "s", tokenIds: PROMPT, eviction: spec("streaming_llm", 48) });
    expect(await stepsOf(second, "s", 4)).toEqual(await stepsOf(reference, "s", 4));
  });

  it("a host snapshot restores on the device and back with every kept key, value, position and mass unchanged (the store's format is one)", async () => {
    const cpu = await loadTestModel();
    const host = new Engine(cpu, DEFAULT_TEST_OPTIONS);
    const device = new Engine(gpu!, DEFAULT_TEST_OPTIONS);
    const hostAgain = new Engine(cpu, DEFAULT_TEST_OPTIONS);
    engines.push(host, device, hostAgain);
    await host.prefill({ sequenceId: "s", tokenIds: PROMPT, eviction: spec("adakv", 40, { window: 8 }) });
    const taken = await host.snapshot("s");
    await device.restore("s", taken);
    const onDevice = await device.snapshot("s");
    await hostAgain.restore("s", onDevice);
    const layerBits = (snapshot: typeof taken) => snapshot.layers.map((layer) => [layer.lengths, layer.keys, layer.values, layer.mass, layer.positions].map((a) => bits(new Float32Array(a.buffer, a.byteOffset, a.length))));
    expect(layerBits(onDevice)).toEqual(layerBits(taken));
    expect(layerBits(await hostAgain.snapshot("s"))).toEqual(layerBits(taken));
    // The device's logits differ from the host's in the last bits: a cross-path restore continues, not bit for bit.
    expect((await stepsOf(device, "s", 3)).length).toBe(3);
    await cpu.runner.release();
  });

  it("offloads a device sequence left idle past --offload-idle-after", async () => {
    const engine = engineOn(stores[0], "device-idle", { offloadIdleAfterMs: 50 });
    await engine.prefill({ sequenceId: "s", tokenIds: PROMPT });
    const deadline = Date.now() + 30_000;
    while (engine.stats().sequences[0]?.residency !== "stored" && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(engine.stats().sequences[0]?.residency).toBe("stored");
    expect(engine.stats().kvBytesDevice).toBe(0);
  });

  it("under memory pressure writes the least recently used idle sequence back to redis and offloads it instead of refusing; restored, it decodes bit for bit as a fork that never left the device", async () => {
    const fill = async (engine: Engine) => {
      await engine.prefill({ sequenceId: "s", tokenIds: PROMPT, eviction: spec("snapkv", 48, { window: 8 }) });
      await engine.fork("s", "kept");
    };
    const sizing = engineOn(null, "");
    await fill(sizing);
    const full = { kvBudgetBytes: sizing.pool.used }; // any growth is pressure

    // Without a store the pressure refuses: "kept" cannot take its next entry.
    const memoryOnly = engineOn(null, "", full);
    await fill(memoryOnly);
    await expect(stepsOf(memoryOnly, "kept", 2)).rejects.toMatchObject({ code: "RESOURCE_EXHAUSTED" });

    const engine = engineOn(stores[0], "device-pressure", full);
    await fill(engine);
    // "kept" needs room: "s", idle, is written to redis before it leaves the device (its stored bytes known at once).
    const kept = await stepsOf(engine, "kept", 6);
    expect(listed(engine, "s")).toMatchObject({ residency: "stored", kvBytes: 0, storedBytes: expect.any(Number) });
    expect(listed(engine, "s")!.storedBytes).toBeGreaterThan(0);
    expect(engine.stats().kvBytesDevice).toBe(engine.stats({ sequenceId: "kept" }).sequences[0].kvBytesDevice);
    // Naming "s" restores it, which needs room in turn: "kept" is written back and leaves. A call naming
    // "s" while that restore waits for the write (its sequence in the table, held) waits for the restore.
    const restoring = engine.bringIn("s");
    while (listed(engine, "s")?.residency === "stored") await new Promise((resolve) => setImmediate(resolve));
    expect(listed(engine, "kept")?.residency).toBe("resident");
    const restored = await stepsOf(engine, "s", 6);
    await restoring;
    expect(restored).toEqual(kept);
    expect(listed(engine, "kept")?.residency).toBe("stored");
    expect(engine.pool.used).toBeLessThanOrEqual(full.kvBudgetBytes);
  });

  it("a call queued for memory (--max-queue) is admitted once the sequence it waited on goes idle: that one is written back to redis and leaves the device", async () => {
    const decodeTokens = 4;
    const sizing = engineOn(null, "");
    await sizing.prefill({ sequenceId: "s", tokenIds: PROMPT });
    await stepsOf(sizing, "s", decodeTokens);
    const sBytes = sizing.stats({ sequenceId: "s" }).sequences[0].kvBytes;
    await sizing.prefill({ sequenceId: "n", tokenIds: PROMPT });
    const nBytes = sizing.stats({ sequenceId: "n" }).sequences[0].kvBytes;
    // Room for "s" to decode, or for "n", never for both.
    const engine = engineOn(stores[0], "device-queued", { kvBudgetBytes: sBytes + Math.floor(nBytes / 2), maxQueue: 4 });
    await engine.prefill({ sequenceId: "s", tokenIds: PROMPT });

    // While "s" decodes it is busy, so "n" cannot take its room and waits in the queue.
    const stream = engine.decode({ sequenceId: "s", maxNewTokens: decodeTokens, sampling: GREEDY, stopTokenIds: [], ignoreEos: true })[Symbol.asyncIterator]();
    await stream.next();
    const admitted = engine.prefill({ sequenceId: "n", tokenIds: PROMPT }, { signal: AbortSignal.timeout(20_000) });
    while (engine.requestsWaiting === 0) await new Promise((resolve) => setImmediate(resolve));
    while (!(await stream.next()).done);

    await admitted;
    expect(listed(engine, "s")).toMatchObject({ residency: "stored", kvBytes: 0 });
    expect(listed(engine, "n")?.residency).toBe("resident");
    expect(engine.requestsWaiting).toBe(0);
    expect(engine.pool.used).toBeLessThanOrEqual(sBytes + Math.floor(nBytes / 2));
  });

  it("with the store down, pressure compresses then refuses as before: RESOURCE_EXHAUSTED, and every sequence stays resident as it was and usable", async () => {
    const fill = async (engine: Engine) => {
      await engine.prefill({ sequenceId: "s", tokenIds: PROMPT, eviction: spec("snapkv", 48, { window: 8 }) });
      // "b" carries a standing h2o budget of 40 with room to grow past it: pressure could compress it to 40.
      await engine.prefill({ sequenceId: "b", tokenIds: PROMPT });
      await stepsOf(engine, "b", 1, { ...spec("h2o", 40), decodeSlack: 64 });
      await engine.prefill({ sequenceId: "r", tokenIds: PROMPT });
    };
    const sizing = engineOn(null, "");
    await fill(sizing);
    const held = sizing.pool.used;
    const sBytes = sizing.stats({ sequenceId: "s" }).sequences[0].kvBytes;
    const reference = await stepsOf(sizing, "s", 4);
    // Room for "s" to decode those 4 tokens, not for "r" to take 80 more unless "s" leaves (compressing "b" is not enough).
    const budget = held + sizing.stats({ sequenceId: "s" }).sequences[0].kvBytes - sBytes;
    const more = Array.from({ length: 80 }, (_, i) => 3 + ((i * 29) % 400));
    const up = engineOn(stores[0], "device-up", { kvBudgetBytes: budget });
    await fill(up);
    await up.prefill({ sequenceId: "r", tokenIds: more });
    expect([listed(up, "s")?.residency, Math.max(...listed(up, "b")!.headLengths.flat())]).toEqual(["stored", 40]);

    const redis = await startRedis();
    const store = await RedisKvStore.open(redis.url);
    try {
      const engine = engineOn(store, "device-down", { kvBudgetBytes: budget });
      await fill(engine);
      const state = () => engine.stats().sequences.map(({ sequenceId, position, kvBytes, headLengths, decodePolicy, decodeBudgetTokens, residency }) => ({ sequenceId, position, kvBytes, headLengths, decodePolicy, decodeBudgetTokens, residency }));
      const before = state();
      await redis.stop();
      await expect(engine.prefill({ sequenceId: "r", tokenIds: more })).rejects.toMatchObject({ code: "RESOURCE_EXHAUSTED" });
      expect(state()).toEqual(before);
      expect(await stepsOf(engine, "s", 4)).toEqual(reference);
    } finally {
      await store.close();
      await redis.stop();
    }
  });
});
