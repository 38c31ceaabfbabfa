import type { SlabPool } from "./slab-pool.js";

/** Capacity grows in whole blocks, so slabs come in few sizes and are reused. */
export const BLOCK_TOKENS = 16;

export interface KvShape {
  kvHeads: number;
  headSize: number;
}

/** Floats per cached entry of one KV head: key, value, mask, attention mass, position. */
export function floatsPerEntry({ headSize }: KvShape): number {
  return 2 * headSize + 3;
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
}

export function slabFloats(shape: KvShape, capacity: number): number {
  return shape.kvHeads * capacity * floatsPerEntry(shape);
}

/**
 * One layer of one sequence's cache, in a single pooled slab laid out as
 * keys [Hkv, cap, d], values [Hkv, cap, d], mask [Hkv, cap], mass [Hkv, cap],
 * positions [Hkv, cap]. Each KV head holds its own number of entries (ragged);
 * slots past a head's length are masked with -inf so the step graph can read
 * the slab as is. Entries stay in ascending original-position order.
 */
export class LayerCache {
  readonly lengths: Int32Array;
  capacity = 0;
  keys: Float32Array = new Float32Array();
  values: Float32Array = new Float32Array();
  /** Additive attention mask: 0 for live entries, -inf for free slots. */
  mask: Float32Array = new Float32Array();
  /** Accumulated attention each entry received (H2O's heavy-hitter score). */
  mass: Float32Array = new Float32Array();
  /** Original token position of each entry. */
  positions: Int32Array = new Int32Array();
  private slab: Float32Array = new Float32Array();

  constructor(
    private readonly pool: SlabPool,
    readonly shape: KvShape,
  ) {
    this.lengths = new Int32Array(shape.kvHeads);
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
   * Appends `count` new rows per head, read from `keys`/`values` laid out as
   * [Hkv, count, d] starting at `offset`. `colsum` (length Hkv * (capacity +
   * count)) adds the attention the step paid to every slot and new row.
   */
  append(keys: Float32Array, values: Float32Array, offset: number, count: number, firstPosition: number, colsum?: Float32Array): void {
    const { kvHeads, headSize } = this.shape;
    const cap = this.capacity;
    for (let h = 0; h < kvHeads; h++) {
      const start = this.lengths[h];
      if (start + count > cap) throw new Error(`layer cache overflow: reserve() before append()`);
      const source = offset + h * count * headSize;
      this.keys.set(keys.subarray(source, source + count * headSize), (h * cap + start) * headSize);
      this.values.set(values.subarray(source, source + count * headSize), (h * cap + start) * headSize);
      for (let i = 0; i < count; i++) {
        const slot = h * cap + start + i;
        this.mask[slot] = 0;
        this.positions[slot] = firstPosition + i;
      }
      if (colsum) {
        const row = h * (cap + count);
        for (let j = 0; j < start; j++) this.mass[h * cap + j] += colsum[row + j];
        for (let i = 0; i < count; i++) this.mass[h * cap + start + i] = colsum[row + cap + i];
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
    for (let h = 0; h < kvHeads; h++) {
      const slots = keep[h];
      for (let i = 0; i < slots.length; i++) {
        const from = h * cap + slots[i];
        const to = h * cap + i;
        if (from === to) continue;
        this.keys.copyWithin(to * headSize, from * headSize, (from + 1) * headSize);
        this.values.copyWithin(to * headSize, from * headSize, (from + 1) * headSize);
        this.mass[to] = this.mass[from];
        this.positions[to] = this.positions[from];
      }
      this.mask.fill(-Infinity, h * cap + slots.length, (h + 1) * cap);
      this.lengths[h] = slots.length;
    }
    this.resize(capacityFor(0, this.maxLength));
  }

  /** What appends change: lengths and accumulated attention. */
  checkpoint(): LayerCheckpoint {
    const lengths = Int32Array.from(this.lengths);
    const mass = Array.from(lengths, (n, h) => this.mass.slice(h * this.capacity, h * this.capacity + n));
    return { lengths, mass };
  }

  /** Undoes every append since `checkpoint` (capacity may have grown meanwhile). */
  rollback({ lengths, mass }: LayerCheckpoint): void {
    for (let h = 0; h < this.shape.kvHeads; h++) {
      this.mask.fill(-Infinity, h * this.capacity + lengths[h], (h + 1) * this.capacity);
      this.mass.set(mass[h], h * this.capacity);
      this.lengths[h] = lengths[h];
    }
  }

  release(): void {
    if (this.slab.length > 0) this.pool.release(this.slab);
    this.bind(new Float32Array(), 0);
    this.lengths.fill(0);
  }

  private resize(capacity: number): void {
    if (capacity === this.capacity) return;
    const { kvHeads, headSize } = this.shape;
    this.pool.assertRoom(slabFloats(this.shape, capacity) * 4, this.bytes);
    const old = { keys: this.keys, values: this.values, mask: this.mask, mass: this.mass, positions: this.positions, capacity: this.capacity, slab: this.slab };
    this.bind(this.pool.acquire(slabFloats(this.shape, capacity)), capacity);
    this.mask.fill(-Infinity);
    for (let h = 0; h < kvHeads; h++) {
      const n = this.lengths[h];
      const from = h * old.capacity;
      const to = h * capacity;
      this.keys.set(old.keys.subarray(from * headSize, (from + n) * headSize), to * headSize);
      this.values.set(old.values.subarray(from * headSize, (from + n) * headSize), to * headSize);
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
    this.keys = slab.subarray(0, rows * headSize);
    this.values = slab.subarray(rows * headSize, 2 * rows * headSize);
    this.mask = slab.subarray(2 * rows * headSize, 2 * rows * headSize + rows);
    this.mass = slab.subarray(2 * rows * headSize + rows, 2 * rows * headSize + 2 * rows);
    this.positions = new Int32Array(slab.buffer, slab.byteOffset + (2 * rows * headSize + 2 * rows) * 4, rows);
  }
}
