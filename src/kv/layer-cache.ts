import { float16ToFloat32 } from "../numerics/float16.js";
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
  headCapacities: Int32Array;
}

export function slabFloats(shape: KvShape, capacity: number): number {
  return shape.kvHeads * capacity * floatsPerEntry(shape);
}

/** Room per head that holds exactly `lengths` entries, rounded up to whole blocks. */
function exactRoom(lengths: ArrayLike<number>): Int32Array {
  return Int32Array.from(lengths, (n) => capacityFor(0, n));
}

/**
 * One layer of one sequence's cache, in a single pooled slab laid out as
 * keys [slots, d], values [slots, d] (both in the KV dtype), mask [slots],
 * mass [slots], positions [slots], where each KV head owns a run of slots
 * starting at `offsets[h]`. Each head holds its own number of entries
 * (ragged); slots past a head's length are masked with -inf. Entries stay in
 * ascending original-position order.
 *
 * While every head has the same room the slots are [Hkv, capacity] and the
 * step graph reads the slab as is. Room for a step (`reserve`) gives every head
 * the same room; after an eviction leaves heads of different
 * lengths (AdaKV) each head keeps only the room its entries need, so memory
 * follows the entries kept.
 *
 * It is the host-slab KvLayer (src/kv/kv-layer.ts); a device-resident layer composes one with
 * zero-width keys and values as its per-entry index (src/kv/device-layer-cache.ts).
 */
export class LayerCache {
  readonly lengths: Int32Array;
  /** Slots each head has room for. */
  headCapacities: Int32Array;
  /** Slot where each head's run starts. */
  offsets: Int32Array;
  readonly kvDtype: KvDtype;
  /** The largest head's room: every head's after `reserve`. */
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
    /** Every head keeps the longest head's room, even after an eviction (a device slab is [Hkv, capacity, d]). */
    private readonly uniformRoom = false,
  ) {
    this.lengths = new Int32Array(shape.kvHeads);
    this.headCapacities = new Int32Array(shape.kvHeads);
    this.offsets = new Int32Array(shape.kvHeads);
    this.kvDtype = shape.kvDtype ?? "float32";
  }

  /** Whether `keys` can be read here: always for a host cache. */
  get keysOnHost(): boolean {
    return true;
  }

  /** Post-RoPE keys [slots, d] as float32: the store itself, or (float16) a decoded copy. */
  get keys(): Float32Array {
    return this.keyStore instanceof Float32Array ? this.keyStore : this.decode().keys;
  }

  /** Values [slots, d] as float32, like `keys`. */
  get values(): Float32Array {
    return this.valueStore instanceof Float32Array ? this.valueStore : this.decode().values;
  }

  get bytes(): number {
    return this.slab.byteLength;
  }

  get entries(): number {
    return this.lengths.reduce((sum, n) => sum + n, 0);
  }

  /** Bytes the held entries themselves take (key, value, position, attention mass), without the room around them that `bytes` counts. */
  get entryBytes(): number {
    return this.entries * floatsPerEntry(this.shape) * Float32Array.BYTES_PER_ELEMENT;
  }

  get maxLength(): number {
    return this.lengths.reduce((max, n) => Math.max(max, n), 0);
  }

  /** Original positions held by each head. */
  headPositions(): number[][] {
    return Array.from(this.lengths, (n, h) => Array.from(this.positions.subarray(this.offsets[h], this.offsets[h] + n)));
  }

  /** Bytes this layer would hold with room for `extra` more entries per head (uniform, as a step needs). */
  bytesWithRoomFor(extra: number): number {
    return slabFloats(this.shape, capacityFor(this.capacity, this.maxLength + extra)) * Float32Array.BYTES_PER_ELEMENT;
  }

  /** Bytes this layer would hold after keeping `lengths` entries per head. */
  bytesHolding(lengths: ArrayLike<number>): number {
    return this.bytesFor(this.roomHolding(lengths));
  }

  /** Makes room for `extra` more entries on every head, uniformly, as a step needs (may move the slab). */
  reserve(extra: number): void {
    this.resize(new Int32Array(this.shape.kvHeads).fill(capacityFor(this.capacity, this.maxLength + extra)));
  }

  /**
   * Between requests, a layer whose heads hold different numbers of entries
   * gives back the room of its shorter heads.
   */
  settle(): void {
    // Heads of one length keep their room for the next steps; a device layer's room stays uniform.
    if (this.uniformRoom || this.lengths.every((n) => n === this.lengths[0])) return;
    // Ragged heads whose exact rooms happen to coincide (0 and 2 entries: one block each) still give back a reserve.
    const room = this.roomHolding(this.lengths);
    if (room.some((n, h) => n !== this.headCapacities[h])) this.resize(room);
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
    if (dtypeOf(keys) !== this.kvDtype || dtypeOf(values) !== this.kvDtype) {
      throw new Error(`layer cache holds ${this.kvDtype} keys and values; got ${dtypeOf(keys)} and ${dtypeOf(values)}`);
    }
    this.decoded = null;
    for (let h = 0; h < kvHeads; h++) {
      const start = this.lengths[h];
      if (start + count > this.headCapacities[h]) throw new Error(`layer cache overflow: reserve() before append()`);
      const base = this.offsets[h];
      const source = offset + h * count * headSize;
      const target = (base + start) * headSize;
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
        const slot = base + start + i;
        this.mask[slot] = 0;
        this.positions[slot] = firstPosition + i;
      }
      if (colsum) {
        const row = colsumOffset + h * (colsumPastSlots + count);
        for (let j = 0; j < start; j++) this.mass[base + j] += colsum[row + j];
        for (let i = 0; i < count; i++) this.mass[base + start + i] = colsum[row + colsumPastSlots + i];
      }
      this.lengths[h] = start + count;
    }
  }

  /**
   * Keeps, per head, only the entries at the given slots (ascending), moving
   * them down in place, then shrinks each head to the room its entries need,
   * returning memory to the pool.
   */
  retain(keep: readonly Int32Array[]): void {
    const { kvHeads, headSize } = this.shape;
    this.decoded = null;
    this.revision++;
    for (let h = 0; h < kvHeads; h++) {
      const slots = keep[h];
      const base = this.offsets[h];
      for (let i = 0; i < slots.length; i++) {
        const from = base + slots[i];
        const to = base + i;
        if (from === to) continue;
        this.keyStore.copyWithin(to * headSize, from * headSize, (from + 1) * headSize);
        this.valueStore.copyWithin(to * headSize, from * headSize, (from + 1) * headSize);
        this.mass[to] = this.mass[from];
        this.positions[to] = this.positions[from];
      }
      this.mask.fill(-Infinity, base + slots.length, base + this.headCapacities[h]);
      this.lengths[h] = slots.length;
    }
    this.resize(this.roomHolding(this.lengths));
  }

  /** What appends change: lengths, accumulated attention and room. */
  checkpoint(): LayerCheckpoint {
    const lengths = Int32Array.from(this.lengths);
    const mass = Array.from(lengths, (n, h) => this.mass.slice(this.offsets[h], this.offsets[h] + n));
    return { lengths, mass, headCapacities: this.room() };
  }

  /** Undoes every append since `checkpoint`, and gives back the room reserved for them. */
  rollback({ lengths, mass, headCapacities }: LayerCheckpoint): void {
    this.decoded = null;
    this.revision++;
    for (let h = 0; h < this.shape.kvHeads; h++) {
      this.mask.fill(-Infinity, this.offsets[h] + lengths[h], this.offsets[h] + this.headCapacities[h]);
      this.mass.set(mass[h], this.offsets[h]);
      this.lengths[h] = lengths[h];
    }
    this.restoreRoom(headCapacities);
  }

  /** Each head's room, to give back with `restoreRoom`. */
  room(): Int32Array {
    return Int32Array.from(this.headCapacities);
  }

  /** Returns room that reserve() took for appends that did not happen (never below what the entries need). */
  restoreRoom(headCapacities: Int32Array): void {
    if (headCapacities.every((room, h) => room >= this.lengths[h])) this.resize(headCapacities);
  }

  /** Becomes a copy of `source` (an empty cache of the same shape): every entry, its mass and position. */
  copyFrom(source: LayerCache): void {
    this.bind(this.pool.acquire(source.slab.length), source.room());
    this.slab.set(source.slab);
    this.lengths.set(source.lengths);
    this.revision++;
  }

  release(): void {
    if (this.slab.length > 0) this.pool.release(this.slab);
    this.bind(new Float32Array(), new Int32Array(this.shape.kvHeads));
    this.lengths.fill(0);
    this.revision++;
  }

  /** The room per head that holds `lengths` entries after an eviction: each head its own, unless uniform. */
  private roomHolding(lengths: ArrayLike<number>): Int32Array {
    if (this.uniformRoom) return new Int32Array(this.shape.kvHeads).fill(capacityFor(0, Math.max(0, ...Array.from(lengths))));
    return exactRoom(lengths);
  }

  private bytesFor(headCapacities: Int32Array): number {
    return headCapacities.reduce((sum, n) => sum + n, 0) * floatsPerEntry(this.shape) * Float32Array.BYTES_PER_ELEMENT;
  }

  private resize(headCapacities: Int32Array): void {
    if (headCapacities.every((room, h) => room === this.headCapacities[h])) return;
    const { kvHeads, headSize } = this.shape;
    this.pool.assertRoom(this.bytesFor(headCapacities), this.bytes);
    const old = { keys: this.keyStore, values: this.valueStore, mass: this.mass, positions: this.positions, offsets: this.offsets, slab: this.slab };
    // The old slab goes back below: shrinking (eviction) must work with the budget full.
    this.bind(this.pool.acquire(this.bytesFor(headCapacities) / Float32Array.BYTES_PER_ELEMENT, old.slab.byteLength), headCapacities);
    this.mask.fill(-Infinity);
    for (let h = 0; h < kvHeads; h++) {
      const n = this.lengths[h];
      const from = old.offsets[h];
      const to = this.offsets[h];
      this.keyStore.set(old.keys.subarray(from * headSize, (from + n) * headSize), to * headSize);
      this.valueStore.set(old.values.subarray(from * headSize, (from + n) * headSize), to * headSize);
      this.mask.fill(0, to, to + n);
      this.mass.set(old.mass.subarray(from, from + n), to);
      this.positions.set(old.positions.subarray(from, from + n), to);
    }
    if (old.slab.length > 0) this.pool.release(old.slab);
  }

  private bind(slab: Float32Array, headCapacities: Int32Array): void {
    const { headSize } = this.shape;
    this.headCapacities = Int32Array.from(headCapacities);
    this.offsets = new Int32Array(headCapacities.length);
    for (let h = 1; h < headCapacities.length; h++) this.offsets[h] = this.offsets[h - 1] + headCapacities[h - 1];
    const rows = headCapacities.reduce((sum, n) => sum + n, 0);
    this.slab = slab;
    this.capacity = headCapacities.reduce((max, n) => Math.max(max, n), 0);
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
