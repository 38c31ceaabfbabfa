import { float16ToFloat32 } from "../model/float16.js";
import type { SlabPool } from "./slab-pool.js";

/** Capacity grows in whole blocks, so slabs come in few sizes and are reused. */
export const BLOCK_TOKENS = 16;

/**
 * How keys and values are stored: float32, or float16 bits in Uint16Arrays,
 * which halves their memory (attention still runs in float32).
 */
export type KvDtype = "float32" | "float16";

export interface KvShape {
  kvHeads: number;
  headSize: number;
  /** Default float32. */
  kvDtype?: KvDtype;
}

/** 4-byte words per cached entry of one KV head: key and value (half as many in float16), mask, attention mass, position. */
export function floatsPerEntry({ headSize, kvDtype }: KvShape): number {
  return (kvDtype === "float16" ? headSize : 2 * headSize) + 3;
}

/** Keys or values as stored: Float32Array, or Uint16Array of float16 bits. */
export type KvArray = Float32Array | Uint16Array;

function dtypeOf(array: KvArray): KvDtype {
  return array instanceof Uint16Array ? "float16" : "float32";
}

/** The capacity a layer needs to hold `needed` entries per head, growing from `current`. */
export function capacityFor(current: number, needed: number): number {
  if (needed <= current) return current;
  const grown = Math.max(needed, Math.ceil(current * 1.25));
  return Math.ceil(grown / BLOCK_TOKENS) * BLOCK_TOKENS;
}

export interface LayerCheckpoint {
  lengths: Int32Array;
  mass: Float32Array[];
  capacity: number;
}

export function slabFloats(shape: KvShape, capacity: number): number {
  return shape.kvHeads * capacity * floatsPerEntry(shape);
}

/**
 * One layer of one sequence's cache, in a single pooled slab laid out as
 * keys [Hkv, cap, d], values [Hkv, cap, d] (both in the KV dtype), mask [Hkv, cap],
 * mass [Hkv, cap], positions [Hkv, cap]. Each KV head holds its own number of
 * entries (ragged); slots past a head's length are masked with -inf so the step
 * graph can read the slab as is. Entries stay in ascending original-position order.
 */
export class LayerCache {
  readonly lengths: Int32Array;
  readonly kvDtype: KvDtype;
  capacity = 0;
  /** Keys and values as stored, which the step graph reads. */
  keyStore: KvArray = new Float32Array();
  valueStore: KvArray = new Float32Array();
  /** Additive attention mask: 0 for live entries, -inf for free slots. */
  mask: Float32Array = new Float32Array();
  /** Accumulated attention each entry received (H2O's heavy-hitter score). */
  mass: Float32Array = new Float32Array();
  /** Original token position of each entry. */
  positions: Int32Array = new Int32Array();
  /**
   * Counts changes other than appends (eviction, rollback, release): a copy of the entries
   * (a decode batch's) that saw the same revision only lacks the entries appended since.
   */
  revision = 0;
  private slab: Float32Array = new Float32Array();
  /** float16 stores: keys and values decoded for policies, until the next change. */
  private decoded: { keys: Float32Array; values: Float32Array } | null = null;

  constructor(
    private readonly pool: SlabPool,
    readonly shape: KvShape,
  ) {
    this.lengths = new Int32Array(shape.kvHeads);
    this.kvDtype = shape.kvDtype ?? "float32";
  }

  /** Post-RoPE keys [Hkv, cap, d] as float32: the store itself, or (float16) a decoded copy. */
  get keys(): Float32Array {
    return this.keyStore instanceof Float32Array ? this.keyStore : this.decode().keys;
  }

  /** Values [Hkv, cap, d] as float32, like `keys`. */
  get values(): Float32Array {
    return this.valueStore instanceof Float32Array ? this.valueStore : this.decode().values;
  }

  get bytes(): number {
    return this.slab.byteLength;
  }

  get entries(): number {
    return this.lengths.reduce((sum, n) => sum + n, 0);
  }

  get maxLength(): number {
    return this.lengths.reduce((max, n) => Math.max(max, n), 0);
  }

  /** Original positions held by each head. */
  headPositions(): number[][] {
    return Array.from(this.lengths, (n, h) => Array.from(this.positions.subarray(h * this.capacity, h * this.capacity + n)));
  }

  /** Bytes this layer would hold with room for `extra` more entries per head. */
  bytesWithRoomFor(extra: number): number {
    return slabFloats(this.shape, capacityFor(this.capacity, this.maxLength + extra)) * Float32Array.BYTES_PER_ELEMENT;
  }

  /** Makes room for `extra` more entries on every head (may move the slab). */
  reserve(extra: number): void {
    this.resize(capacityFor(this.capacity, this.maxLength + extra));
  }

  /**
   * Appends `count` new rows per head, read from `keys`/`values` (in the KV
   * dtype) laid out as [Hkv, count, d] starting at `offset`. `colsum` adds the attention
   * the step paid to every entry and new row: per head, `colsumPastSlots` cached slots
   * (the slab's capacity, or a decode batch's) then the `count` new rows, from `colsumOffset`.
   */
  append(
    keys: KvArray,
    values: KvArray,
    offset: number,
    count: number,
    firstPosition: number,
    colsum?: Float32Array,
    colsumOffset = 0,
    colsumPastSlots = this.capacity,
  ): void {
    const { kvHeads, headSize } = this.shape;
    const cap = this.capacity;
    if (dtypeOf(keys) !== this.kvDtype || dtypeOf(values) !== this.kvDtype) {
      throw new Error(`layer cache holds ${this.kvDtype} keys and values; got ${dtypeOf(keys)} and ${dtypeOf(values)}`);
    }
    this.decoded = null;
    for (let h = 0; h < kvHeads; h++) {
      const start = this.lengths[h];
      if (start + count > cap) throw new Error(`layer cache overflow: reserve() before append()`);
      const source = offset + h * count * headSize;
      const target = (h * cap + start) * headSize;
      if (count === 1) {
        // A decode step appends one row of a few values per head: a loop beats two subarray views.
        for (let k = 0; k < headSize; k++) {
          this.keyStore[target + k] = keys[source + k];
          this.valueStore[target + k] = values[source + k];
        }
      } else {
        this.keyStore.set(keys.subarray(source, source + count * headSize), target);
        this.valueStore.set(values.subarray(source, source + count * headSize), target);
      }
      for (let i = 0; i < count; i++) {
        const slot = h * cap + start + i;
        this.mask[slot] = 0;
        this.positions[slot] = firstPosition + i;
      }
      if (colsum) {
        const row = colsumOffset + h * (colsumPastSlots + count);
        for (let j = 0; j < start; j++) this.mass[h * cap + j] += colsum[row + j];
        for (let i = 0; i < count; i++) this.mass[h * cap + start + i] = colsum[row + colsumPastSlots + i];
      }
      this.lengths[h] = start + count;
    }
  }

  /**
   * Keeps, per head, only the entries at the given slots (ascending), moving
   * them down in place, then shrinks the slab to return memory to the pool.
   */
  retain(keep: readonly Int32Array[]): void {
    const { kvHeads, headSize } = this.shape;
    const cap = this.capacity;
    this.decoded = null;
    this.revision++;
    for (let h = 0; h < kvHeads; h++) {
      const slots = keep[h];
      for (let i = 0; i < slots.length; i++) {
        const from = h * cap + slots[i];
        const to = h * cap + i;
        if (from === to) continue;
        this.keyStore.copyWithin(to * headSize, from * headSize, (from + 1) * headSize);
        this.valueStore.copyWithin(to * headSize, from * headSize, (from + 1) * headSize);
        this.mass[to] = this.mass[from];
        this.positions[to] = this.positions[from];
      }
      this.mask.fill(-Infinity, h * cap + slots.length, (h + 1) * cap);
      this.lengths[h] = slots.length;
    }
    this.resize(capacityFor(0, this.maxLength));
  }

  /** What appends change: lengths, accumulated attention and capacity. */
  checkpoint(): LayerCheckpoint {
    const lengths = Int32Array.from(this.lengths);
    const mass = Array.from(lengths, (n, h) => this.mass.slice(h * this.capacity, h * this.capacity + n));
    return { lengths, mass, capacity: this.capacity };
  }

  /** Undoes every append since `checkpoint`, and gives back the capacity reserved for them. */
  rollback({ lengths, mass, capacity }: LayerCheckpoint): void {
    this.decoded = null;
    this.revision++;
    for (let h = 0; h < this.shape.kvHeads; h++) {
      this.mask.fill(-Infinity, h * this.capacity + lengths[h], (h + 1) * this.capacity);
      this.mass.set(mass[h], h * this.capacity);
      this.lengths[h] = lengths[h];
    }
    this.shrinkTo(capacity);
  }

  /** Returns capacity that reserve() took for appends that did not happen (never below what the entries need). */
  shrinkTo(capacity: number): void {
    if (capacity < this.capacity && capacity >= this.maxLength) this.resize(capacity);
  }

  /** Becomes a copy of `source` (an empty cache of the same shape): every entry, its mass and position. */
  copyFrom(source: LayerCache): void {
    this.bind(this.pool.acquire(source.slab.length), source.capacity);
    this.slab.set(source.slab);
    this.lengths.set(source.lengths);
    this.revision++;
  }

  release(): void {
    if (this.slab.length > 0) this.pool.release(this.slab);
    this.bind(new Float32Array(), 0);
    this.lengths.fill(0);
    this.revision++;
  }

  private resize(capacity: number): void {
    if (capacity === this.capacity) return;
    const { kvHeads, headSize } = this.shape;
    this.pool.assertRoom(slabFloats(this.shape, capacity) * 4, this.bytes);
    const old = { keys: this.keyStore, values: this.valueStore, mask: this.mask, mass: this.mass, positions: this.positions, capacity: this.capacity, slab: this.slab };
    // The old slab goes back below: shrinking (eviction) must work with the budget full.
    this.bind(this.pool.acquire(slabFloats(this.shape, capacity), old.slab.byteLength), capacity);
    this.mask.fill(-Infinity);
    for (let h = 0; h < kvHeads; h++) {
      const n = this.lengths[h];
      const from = h * old.capacity;
      const to = h * capacity;
      this.keyStore.set(old.keys.subarray(from * headSize, (from + n) * headSize), to * headSize);
      this.valueStore.set(old.values.subarray(from * headSize, (from + n) * headSize), to * headSize);
      this.mask.fill(0, to, to + n);
      this.mass.set(old.mass.subarray(from, from + n), to);
      this.positions.set(old.positions.subarray(from, from + n), to);
    }
    if (old.slab.length > 0) this.pool.release(old.slab);
  }

  private bind(slab: Float32Array, capacity: number): void {
    const { kvHeads, headSize } = this.shape;
    const rows = kvHeads * capacity;
    this.slab = slab;
    this.capacity = capacity;
    this.decoded = null;
    let kvWords: number; // 4-byte words holding keys and values
    if (this.kvDtype === "float16") {
      this.keyStore = new Uint16Array(slab.buffer, slab.byteOffset, rows * headSize);
      this.valueStore = new Uint16Array(slab.buffer, slab.byteOffset + rows * headSize * 2, rows * headSize);
      kvWords = rows * headSize;
    } else {
      this.keyStore = slab.subarray(0, rows * headSize);
      this.valueStore = slab.subarray(rows * headSize, 2 * rows * headSize);
      kvWords = 2 * rows * headSize;
    }
    this.mask = slab.subarray(kvWords, kvWords + rows);
    this.mass = slab.subarray(kvWords + rows, kvWords + 2 * rows);
    this.positions = new Int32Array(slab.buffer, slab.byteOffset + (kvWords + 2 * rows) * 4, rows);
  }

  private decode(): { keys: Float32Array; values: Float32Array } {
    this.decoded ??= {
      keys: float16ToFloat32(this.keyStore as Uint16Array),
      values: float16ToFloat32(this.valueStore as Uint16Array),
    };
    return this.decoded;
  }
}
