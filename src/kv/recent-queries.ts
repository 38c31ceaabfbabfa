import type { RecentQueries } from "../policies/policy.js";
import type { SlabPool } from "./slab-pool.js";

export interface RingCheckpoint {
  /** Rows the ring kept (its slab, when allocated, holds that many). */
  rows: number;
  slab: Float32Array;
  count: number;
  next: number;
}

export interface QueryShape {
  layers: number;
  heads: number;
  headSize: number;
}

/**
 * The post-RoPE queries of a sequence's last `rows` tokens, per layer: what
 * attention scorers (SnapKV's window, NACL's proxies, TOVA's last row) need
 * to recompute attention over the cache as it is at eviction time. A ring in
 * one pooled slab: [L, Hq, rows, d] then the rows' positions. How many rows it
 * keeps follows the policy named for the sequence (`resize`; docs/policies.md).
 */
export class RecentQueryRing {
  /** The pooled slab; `queries` and `positions` are views into it. */
  private slab: Float32Array = new Float32Array();
  private queries: Float32Array = new Float32Array();
  private positions: Int32Array = new Int32Array();
  /** Rows held, and the slot the next row goes to. */
  private held = 0;
  private next = 0;
  private kept: number;

  constructor(
    private readonly pool: SlabPool,
    private readonly shape: QueryShape,
    rows: number,
  ) {
    this.kept = rows;
  }

  /** Rows held now (at most `rows`). */
  get count(): number {
    return this.held;
  }

  /** Rows the ring keeps: the newest `rows` tokens' queries. */
  get rows(): number {
    return this.kept;
  }

  get bytes(): number {
    return this.slab.byteLength;
  }

  /** Bytes the ring holds once allocated. */
  get fullBytes(): number {
    const { layers, heads, headSize } = this.shape;
    return this.kept === 0 ? 0 : (layers * heads * this.kept * headSize + this.kept) * Float32Array.BYTES_PER_ELEMENT;
  }

  /**
   * Adds the last `count` rows of a step's queries, laid out [L, Hq, count, d]
   * (a batched step's: [L, batch, Hq, count, d], this sequence's being `member`),
   * whose first row has original position `firstPosition`.
   */
  push(queries: Float32Array, count: number, firstPosition: number, batch = 1, member = 0): void {
    if (this.kept === 0 || count === 0) return;
    this.reserve();
    const { layers, heads, headSize } = this.shape;
    for (let i = Math.max(0, count - this.kept); i < count; i++) {
      for (let l = 0; l < layers; l++) {
        for (let h = 0; h < heads; h++) {
          const from = (((l * batch + member) * heads + h) * count + i) * headSize;
          const to = ((l * heads + h) * this.kept + this.next) * headSize;
          // One head's row is a few floats: a loop beats a subarray view per row.
          for (let k = 0; k < headSize; k++) this.queries[to + k] = queries[from + k];
        }
      }
      this.positions[this.next] = firstPosition + i;
      this.next = (this.next + 1) % this.kept;
      this.held = Math.min(this.held + 1, this.kept);
    }
  }

  /** The rows held, oldest first, as policies read them. */
  view(): RecentQueries {
    const { layers, heads, headSize } = this.shape;
    const first = (this.next - this.held + this.kept) % Math.max(1, this.kept);
    const order = Array.from({ length: this.held }, (_, i) => (first + i) % this.kept);
    return {
      count: this.held,
      positions: Int32Array.from(order, (slot) => this.positions[slot]),
      layers: Array.from({ length: layers }, (_, l) => {
        const out = new Float32Array(heads * this.held * headSize);
        for (let h = 0; h < heads; h++) {
          order.forEach((slot, i) => {
            const from = ((l * heads + h) * this.kept + slot) * headSize;
            out.set(this.queries.subarray(from, from + headSize), (h * this.held + i) * headSize);
          });
        }
        return out;
      }),
    };
  }

  /** Forgets the rows of positions `from` and later (the newest rows: positions ascend). */
  dropFrom(from: number): void {
    while (this.held > 0) {
      const newest = (this.next - 1 + this.kept) % this.kept;
      if (this.positions[newest] < from) return;
      this.next = newest;
      this.held--;
    }
  }

  /**
   * Keeps `rows` rows from now on; of those held, the newest that fit stay. The new slab is taken
   * before the old one is given back (counting that one as freed), so a pool that cannot hold it leaves
   * the ring as it was; a smaller ring always fits.
   */
  resize(rows: number): void {
    if (rows === this.kept) return;
    const { layers, heads, headSize } = this.shape;
    const held = this.view();
    const keep = Math.min(held.count, rows);
    if (keep === 0) {
      this.release();
      this.kept = rows;
      return;
    }
    const queryFloats = layers * heads * rows * headSize;
    const slab = this.pool.acquire(queryFloats + rows, this.slab.byteLength);
    const queries = slab.subarray(0, queryFloats);
    const positions = new Int32Array(slab.buffer, slab.byteOffset + queryFloats * 4, rows);
    for (let i = 0; i < keep; i++) {
      const row = held.count - keep + i;
      positions[i] = held.positions[row];
      for (let l = 0; l < layers; l++) {
        for (let h = 0; h < heads; h++) {
          const from = (h * held.count + row) * headSize;
          queries.set(held.layers[l].subarray(from, from + headSize), ((l * heads + h) * rows + i) * headSize);
        }
      }
    }
    this.release();
    this.kept = rows;
    this.slab = slab;
    this.queries = queries;
    this.positions = positions;
    this.held = keep;
    this.next = keep % rows;
  }

  checkpoint(): RingCheckpoint {
    return { rows: this.kept, slab: this.slab.slice(), count: this.held, next: this.next };
  }

  rollback(saved: RingCheckpoint): void {
    if (saved.rows !== this.kept) {
      this.release();
      this.kept = saved.rows;
    }
    if (saved.slab.length === 0) {
      this.release();
      return;
    }
    this.reserve();
    this.slab.set(saved.slab);
    this.held = saved.count;
    this.next = saved.next;
  }

  /** Becomes a copy of `source` (an empty ring of the same shape). */
  copyFrom(source: RecentQueryRing): void {
    this.kept = source.kept;
    if (source.slab.length === 0) return;
    this.reserve();
    this.slab.set(source.slab);
    this.held = source.count;
    this.next = source.next;
  }

  release(): void {
    if (this.slab.length > 0) this.pool.release(this.slab);
    this.slab = new Float32Array();
    this.queries = new Float32Array();
    this.positions = new Int32Array();
    this.held = 0;
    this.next = 0;
  }

  /** Takes the ring's slab from the pool now (the first push would), so that admission counts it before any await. */
  reserve(): void {
    if (this.slab.length > 0 || this.kept === 0) return;
    const { layers, heads, headSize } = this.shape;
    const queryFloats = layers * heads * this.kept * headSize;
    this.slab = this.pool.acquire(queryFloats + this.kept);
    this.queries = this.slab.subarray(0, queryFloats);
    this.positions = new Int32Array(this.slab.buffer, this.slab.byteOffset + queryFloats * 4, this.kept);
  }
}
