import { expect } from "vitest";
import { floatsPerEntry, type LayerCache } from "../../../src/kv/layer-cache.js";
import { kvArray, sample } from "./kv-data.js";

const F = Float32Array.BYTES_PER_ELEMENT;

/** One cached entry as the test expects it. */
export interface Entry {
  key: number[];
  value: number[];
  position: number;
  mass: number;
}

/** Per head, the entries a cache should hold, oldest first. */
export type Expected = Entry[][];

/** Asserts that `cache` holds exactly `expected`, laid out and accounted as LayerCache documents. */
export function expectHolds(cache: LayerCache, expected: Expected): void {
  const { kvHeads, headSize } = cache.shape;
  expect(Array.from(cache.lengths)).toEqual(expected.map((head) => head.length));
  // Layout: heads' runs back to back, each as long as its room.
  for (let h = 0; h < kvHeads; h++) {
    expect(cache.offsets[h]).toBe(h === 0 ? 0 : cache.offsets[h - 1] + cache.headCapacities[h - 1]);
    expect(cache.headCapacities[h]).toBeGreaterThanOrEqual(cache.lengths[h]);
  }
  const rooms = Array.from(cache.headCapacities);
  expect(cache.capacity).toBe(Math.max(0, ...rooms));
  expect(cache.bytes).toBe(rooms.reduce((a, b) => a + b, 0) * floatsPerEntry(cache.shape) * F);
  const keys = cache.keys;
  const values = cache.values;
  for (let h = 0; h < kvHeads; h++) {
    const base = cache.offsets[h];
    expected[h].forEach((entry, i) => {
      const slot = base + i;
      expect(Array.from(keys.subarray(slot * headSize, (slot + 1) * headSize))).toEqual(entry.key);
      expect(Array.from(values.subarray(slot * headSize, (slot + 1) * headSize))).toEqual(entry.value);
      expect(cache.positions[slot]).toBe(entry.position);
      expect(cache.mass[slot]).toBe(entry.mass);
      expect(cache.mask[slot]).toBe(0);
    });
    for (let slot = base + expected[h].length; slot < base + cache.headCapacities[h]; slot++) expect(cache.mask[slot]).toBe(-Infinity);
  }
  expect(cache.headPositions()).toEqual(expected.map((head) => head.map((entry) => entry.position)));
  expect(cache.entries).toBe(expected.reduce((sum, head) => sum + head.length, 0));
  expect(cache.maxLength).toBe(Math.max(0, ...expected.map((head) => head.length)));
}

/**
 * Appends `count` rows per head to `cache` and `expected`, as a step does: keys and values [Hkv, count, d]
 * from `offset` of a larger output, and a colsum of `pastSlots` cached slots then the new rows per head.
 */
export function appendRows(cache: LayerCache, expected: Expected, count: number, offset: number, pastSlots: number, stream: { n: number }): void {
  const { kvHeads, headSize } = cache.shape;
  const dtype = cache.kvDtype;
  const keys = new Array<number>(offset + kvHeads * count * headSize).fill(0);
  const values = [...keys];
  const colsum = new Array<number>(offset + kvHeads * (pastSlots + count)).fill(0);
  for (let i = offset; i < keys.length; i++) {
    keys[i] = sample(stream.n++);
    values[i] = sample(stream.n++);
  }
  for (let i = offset; i < colsum.length; i++) colsum[i] = stream.n++ % 8;
  const firstPosition = expected.reduce((max, head) => Math.max(max, ...head.map((e) => e.position + 1)), 0) + (stream.n % 3);
  for (let h = 0; h < kvHeads; h++) {
    const row = offset + h * (pastSlots + count);
    expected[h].forEach((entry, j) => (entry.mass += colsum[row + j]));
    for (let i = 0; i < count; i++) {
      const at = offset + (h * count + i) * headSize;
      expected[h].push({
        key: keys.slice(at, at + headSize),
        value: values.slice(at, at + headSize),
        position: firstPosition + i,
        mass: colsum[row + pastSlots + i],
      });
    }
  }
  const pastArg = pastSlots === cache.capacity && stream.n % 2 === 0 ? undefined : pastSlots;
  cache.append(kvArray(keys, dtype), kvArray(values, dtype), offset, count, firstPosition, Float32Array.from(colsum), offset, pastArg);
}

export function clone(expected: Expected): Expected {
  return expected.map((head) => head.map((entry) => ({ ...entry, key: [...entry.key], value: [...entry.value] })));
}

export const empty = (kvHeads: number): Expected => Array.from({ length: kvHeads }, () => []);

