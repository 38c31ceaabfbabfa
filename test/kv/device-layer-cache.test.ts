import type ort from "onnxruntime-node";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DeviceLayerCache } from "../../src/kv/device-layer-cache.js";
import { hostLayer } from "../../src/kv/host-layer.js";
import { DeviceSlab, type SlabDevice } from "../../src/kv/device-slab.js";
import { capacityFor, type LayerCheckpoint } from "../../src/kv/layer-cache.js";
import { SlabPool } from "../../src/kv/slab-pool.js";

/**
 * A device held in host memory: a slab's key and value "tensors" are Float32Arrays of
 * [Hkv * capacity, d] rows, and the device counts the slabs it made that are not disposed.
 */
class HostDevice implements SlabDevice {
  live = 0;
  constructor(readonly headSize: number) {}

  slab(keys: Float32Array, values: Float32Array, capacity: number): DeviceSlab {
    this.live++;
    let disposed = 0;
    const tensor = (data: Float32Array) =>
      ({
        data,
        dispose: () => {
          if (++disposed === 2) this.live--;
          if (disposed > 2) throw new Error("a slab disposed twice");
        },
      }) as unknown as ort.Tensor;
    return new DeviceSlab(tensor(keys), tensor(values), capacity);
  }

  async gather(source: DeviceSlab | null, slots: Int32Array, capacity: number): Promise<DeviceSlab> {
    return this.slab(this.rows(source && (source.key.data as Float32Array), slots), this.rows(source && (source.value.data as Float32Array), slots), capacity);
  }

  async readKeys(source: DeviceSlab, slots: Int32Array): Promise<Float32Array> {
    return this.rows(source.key.data as Float32Array, slots);
  }

  async readValues(source: DeviceSlab, slots: Int32Array): Promise<Float32Array> {
    return this.rows(source.value.data as Float32Array, slots);
  }

  upload(keys: Float32Array, values: Float32Array, capacity: number): DeviceSlab {
    return this.slab(Float32Array.from(keys), Float32Array.from(values), capacity);
  }

  private rows(data: Float32Array | null, slots: Int32Array): Float32Array {
    const d = this.headSize;
    const out = new Float32Array(slots.length * d);
    if (data) slots.forEach((row, i) => out.set(data.subarray(row * d, (row + 1) * d), i * d));
    return out;
  }
}

const key = (n: number, k: number) => n * 10 + k;
const value = (n: number, k: number) => -(n * 10 + k);

/**
 * One step as the WebGPU runner and the engine run it: room first, the slab laid out for the step,
 * a new slab with `count` rows appended per head (adopted), then the host-side append.
 */
async function step(cache: DeviceLayerCache, device: HostDevice, expected: number[][], count: number, stream: { n: number }): Promise<void> {
  cache.reserve(count);
  const past = await cache.slabForStep();
  const C = cache.capacity;
  const d = cache.headSize;
  const keys = Float32Array.from(past.key.data as Float32Array);
  const values = Float32Array.from(past.value.data as Float32Array);
  expect(past.capacity).toBe(C);
  expect(keys.length).toBe(cache.kvHeads * C * d);
  for (let h = 0; h < cache.kvHeads; h++) {
    for (let i = 0; i < count; i++) {
      const n = stream.n++;
      const row = h * C + cache.lengths[h] + i;
      for (let k = 0; k < d; k++) {
        keys[row * d + k] = key(n, k);
        values[row * d + k] = value(n, k);
      }
      expected[h].push(n);
    }
  }
  cache.adopt(device.slab(keys, values, C), count);
  const colsum = new Float32Array(cache.kvHeads * (C + count));
  const none = new Float32Array();
  cache.append(none, none, 0, count, 0, colsum);
}

/** Asserts what the device holds for `cache`, laid out for a step, and that host and device agree. */
async function expectOnDevice(cache: DeviceLayerCache, expected: number[][], pool: SlabPool, others = 0): Promise<void> {
  const { kvHeads, headSize: d } = cache;
  expect(Array.from(cache.lengths)).toEqual(expected.map((head) => head.length));
  expect(Array.from(cache.room())).toEqual(new Array(kvHeads).fill(cache.capacity));
  expect(cache.deviceBytes).toBe(cache.deviceBytesFor(cache.capacity));
  expect(pool.used).toBe(cache.bytes + others);
  if (cache.capacity === 0) return;
  const slab = await cache.slabForStep();
  expect(slab.capacity).toBe(cache.capacity);
  const keys = slab.key.data as Float32Array;
  const values = slab.value.data as Float32Array;
  expected.forEach((head, h) =>
    head.forEach((n, i) => {
      const row = h * cache.capacity + i;
      expect(Array.from(keys.subarray(row * d, (row + 1) * d))).toEqual(Array.from({ length: d }, (_, k) => key(n, k)));
      expect(Array.from(values.subarray(row * d, (row + 1) * d))).toEqual(Array.from({ length: d }, (_, k) => value(n, k)));
      expect(cache.mask[cache.offsets[h] + i]).toBe(0);
    }),
  );
  // Already laid out: a second call gathers nothing.
  expect(await cache.slabForStep()).toBe(slab);
  await cache.loadKeys();
  expect(cache.keysOnHost).toBe(true);
  expected.forEach((head, h) => head.forEach((n, i) => expect(cache.keys[(h * cache.capacity + i) * d]).toBe(key(n, 0))));
}

describe("DeviceLayerCache", () => {
  it("keeps every head's room the same, counts host and device bytes in the pool, and reads keys back only when asked", async () => {
    const pool = new SlabPool(1 << 20);
    const device = new HostDevice(4);
    const cache = new DeviceLayerCache(pool, 2, 4, device);
    const expected: number[][] = [[], []];
    const stream = { n: 1 };
    expect(cache.bytesWithRoomFor(3)).toBe(2 * 16 * 3 * 4 + 2 * 2 * 16 * 4 * 4);
    await step(cache, device, expected, 3, stream);
    expect(cache.bytes).toBe(2 * 16 * 3 * 4 + 2 * 2 * 16 * 4 * 4);
    expect(pool.deviceBytes).toBe(2 * 2 * 16 * 4 * 4);
    expect(cache.keysOnHost).toBe(false);
    expect(() => cache.keys).toThrow(/on the device: loadKeys\(\) reads them back/);
    // Values never come to the host, and host-slab code (the CPU step, decode batches, snapshots) refuses the layer.
    expect("values" in cache).toBe(false);
    expect(() => hostLayer(cache, "host slabs only")).toThrow("host slabs only");
    await expectOnDevice(cache, expected, pool);
    await step(cache, device, expected, 1, stream);
    expect(cache.keysOnHost).toBe(false);
    // What a snapshot reads back is a host copy outside the budget, dropped once the snapshot is taken.
    await cache.loadEntries();
    expect(cache.entriesOnHost.values.length).toBe(2 * cache.capacity * 4);
    cache.dropReadBack();
    expect(cache.keysOnHost).toBe(false);
    expect(() => cache.entriesOnHost).toThrow(/loadEntries\(\) reads them back/);

    // AdaKV-style ragged eviction: the device slab keeps the longest head's room for every head.
    await step(cache, device, expected, 20, stream);
    expect(cache.bytesHolding([2, 17])).toBe(2 * 32 * 3 * 4 + cache.deviceBytesFor(32));
    cache.retain([Int32Array.from([0, 5]), Int32Array.from(Array(17).keys()).map((i) => i + 7)]);
    expected[0] = [expected[0][0], expected[0][5]];
    expected[1] = expected[1].slice(7, 24);
    expect(cache.capacity).toBe(32);
    cache.settle();
    expect(cache.capacity).toBe(32);
    await expectOnDevice(cache, expected, pool);

    cache.release();
    expect(pool.used).toBe(0);
    expect(pool.deviceBytes).toBe(0);
    expect(device.live).toBe(0);
  });

  it("shares the device slab with a copy until either steps, and frees it when both let go", async () => {
    const pool = new SlabPool(1 << 20);
    const device = new HostDevice(2);
    const source = new DeviceLayerCache(pool, 1, 2, device);
    const expected = [[] as number[]];
    const stream = { n: 1 };
    await step(source, device, expected, 5, stream);
    const copy = new DeviceLayerCache(pool, 1, 2, device);
    copy.copyFrom(source);
    expect(device.live).toBe(1);
    const copied = [[...expected[0]]];
    await step(copy, device, copied, 2, stream);
    await expectOnDevice(source, expected, pool, copy.bytes);
    await expectOnDevice(copy, copied, pool, source.bytes);
    source.release();
    copy.release();
    expect(device.live).toBe(0);
    expect(pool.used).toBe(0);
  });

  it("property: through steps, evictions, rollbacks, abandoned reservations, copies and releases, the device holds each head's entries first in its run, bytes accounted equal bytes held, and no slab leaks", async () => {
    type Op =
      | { kind: "step"; count: number }
      | { kind: "retain"; picks: boolean[][] }
      | { kind: "checkpoint" }
      | { kind: "rollback" }
      | { kind: "abandon"; extra: number }
      | { kind: "copy" }
      | { kind: "release" };
    const op: fc.Arbitrary<Op> = fc.oneof(
      { arbitrary: fc.record({ kind: fc.constant("step" as const), count: fc.integer({ min: 1, max: 20 }) }), weight: 4 },
      fc.record({ kind: fc.constant("retain" as const), picks: fc.array(fc.array(fc.boolean(), { maxLength: 64 }), { minLength: 3, maxLength: 3 }) }),
      fc.record({ kind: fc.constant("checkpoint" as const) }),
      fc.record({ kind: fc.constant("rollback" as const) }),
      fc.record({ kind: fc.constant("abandon" as const), extra: fc.integer({ min: 1, max: 40 }) }),
      fc.record({ kind: fc.constant("copy" as const) }),
      fc.record({ kind: fc.constant("release" as const) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 }), fc.array(op, { maxLength: 25 }), async (kvHeads, headSize, ops) => {
        const pool = new SlabPool(1 << 24);
        const device = new HostDevice(headSize);
        const cache = new DeviceLayerCache(pool, kvHeads, headSize, device);
        let expected: number[][] = Array.from({ length: kvHeads }, () => []);
        let saved: { checkpoint: LayerCheckpoint; expected: number[][]; bytes: number } | null = null;
        const stream = { n: 1 };
        for (const o of ops) {
          if (o.kind === "step") {
            await step(cache, device, expected, o.count, stream);
          } else if (o.kind === "retain") {
            const keep = expected.map((head, h) => Int32Array.from(head.keys()).filter((i) => o.picks[h][i] ?? i % 3 === 0));
            const predicted = cache.bytesHolding(keep.map((slots) => slots.length));
            cache.retain(keep);
            expected = expected.map((head, h) => Array.from(keep[h], (slot) => head[slot]));
            expect(cache.capacity).toBe(capacityFor(0, Math.max(0, ...expected.map((head) => head.length))));
            expect(cache.bytes).toBe(predicted);
            saved = null;
          } else if (o.kind === "checkpoint") {
            saved = { checkpoint: cache.checkpoint(), expected: expected.map((head) => [...head]), bytes: cache.bytes };
          } else if (o.kind === "rollback") {
            if (!saved) continue;
            cache.rollback(saved.checkpoint);
            expected = saved.expected.map((head) => [...head]);
            expect(cache.bytes).toBe(saved.bytes);
          } else if (o.kind === "abandon") {
            const room = cache.room();
            const bytes = cache.bytes;
            cache.reserve(o.extra);
            cache.restoreRoom(room);
            expect(cache.bytes).toBe(bytes);
          } else if (o.kind === "copy") {
            const copy = new DeviceLayerCache(pool, kvHeads, headSize, device);
            copy.copyFrom(cache);
            await expectOnDevice(copy, expected, pool, cache.bytes);
            copy.release();
          } else {
            cache.release();
            expected = expected.map(() => []);
            saved = null;
          }
          await expectOnDevice(cache, expected, pool);
          expect(pool.deviceBytes).toBe(cache.deviceBytes);
          expect(device.live).toBeLessThanOrEqual(1);
        }
        cache.release();
        expect(device.live).toBe(0);
        expect(pool.used).toBe(0);
      }),
      { numRuns: 150 },
    );
  });
});
