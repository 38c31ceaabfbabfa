import type { RecentQueries } from "../policies/policy.js";
import type { SlabPool } from "./slab-pool.js";

export interface RingCheckpoint {
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
 * one pooled slab: [L, Hq, rows, d] then the rows' positions.
 */
export class RecentQueryRing {
  /** The pooled slab; `queries` and `positions` are views into it. */
  private slab: Float32Array = new Float32Array();
  private queries: Float32Array = new Float32Array();
  private positions: Int32Array = new Int32Array();
  /** Rows held, and the slot the next row goes to. */
  private count = 0;
  private next = 0;

  constructor(
    private readonly pool: SlabPool,
    private readonly shape: QueryShape,
    readonly rows: number,
  ) {}

  get bytes(): number {
    return this.slab.byteLength;
  }

  /** Bytes the ring holds once allocated. */
  get fullBytes(): number {
    const { layers, heads, headSize } = this.shape;
    return this.rows === 0 ? 0 : (layers * heads * this.rows * headSize + this.rows) * Float32Array.BYTES_PER_ELEMENT;
  }

  /**
   * Adds the last `count` rows of a step's queries, laid out [L, Hq, count, d]
   * (a batched step's: [L, batch, Hq, count, d], this sequence's being `member`),
   * whose first row has original position `firstPosition`.
   */
  push(queries: Float32Array, count: number, firstPosition: number, batch = 1, member = 0): void {
    if (this.rows === 0 || count === 0) return;
    this.reserve();
    const { layers, heads, headSize } = this.shape;
    for (let i = Math.max(0, count - this.rows); i < count; i++) {
      for (let l = 0; l < layers; l++) {
        for (let h = 0; h < heads; h++) {
          const from = (((l * batch + member) * heads + h) * count + i) * headSize;
          const to = ((l * heads + h) * this.rows + this.next) * headSize;
          // One head's row is a few floats: a loop beats a subarray view per row.
          for (let k = 0; k < headSize; k++) this.queries[to + k] = queries[from + k];
        }
      }
      this.positions[this.next] = firstPosition + i;
      this.next = (this.next + 1) % this.rows;
      this.count = Math.min(this.count + 1, this.rows);
    }
  }

  /** The rows held, oldest first, as policies read them. */
  view(): RecentQueries {
    const { layers, heads, headSize } = this.shape;
    const first = (this.next - this.count + this.rows) % Math.max(1, this.rows);
    const order = Array.from({ length: this.count }, (_, i) => (first + i) % this.rows);
    return {
      count: this.count,
      positions: Int32Array.from(order, (slot) => this.positions[slot]),
      layers: Array.from({ length: layers }, (_, l) => {
        const out = new Float32Array(heads * this.count * headSize);
        for (let h = 0; h < heads; h++) {
          order.forEach((slot, i) => {
            const from = ((l * heads + h) * this.rows + slot) * headSize;
            out.set(this.queries.subarray(from, from + headSize), (h * this.count + i) * headSize);
          });
        }
        return out;
      }),
    };
  }

  /** Forgets the rows of positions `from` and later (the newest rows: positions ascend). */
  dropFrom(from: number): void {
    while (this.count > 0) {
      const newest = (this.next - 1 + this.rows) % this.rows;
      if (this.positions[newest] < from) return;
      this.next = newest;
      this.count--;
    }
  }

  checkpoint(): RingCheckpoint {
    return { slab: this.slab.slice(), count: this.count, next: this.next };
  }

  rollback(saved: RingCheckpoint): void {
    if (saved.slab.length === 0) {
      this.release();
      return;
    }
    this.slab.set(saved.slab);
    this.count = saved.count;
    this.next = saved.next;
  }

  /** Becomes a copy of `source` (an empty ring of the same shape). */
  copyFrom(source: RecentQueryRing): void {
    if (source.slab.length === 0) return;
    this.reserve();
    this.slab.set(source.slab);
    this.count = source.count;
    this.next = source.next;
  }

  release(): void {
    if (this.slab.length > 0) this.pool.release(this.slab);
    this.slab = new Float32Array();
    this.queries = new Float32Array();
    this.positions = new Int32Array();
    this.count = 0;
    this.next = 0;
  }

  /** Takes the ring's slab from the pool now (the first push would), so that admission counts it before any await. */
  reserve(): void {
    if (this.slab.length > 0 || this.rows === 0) return;
    const { layers, heads, headSize } = this.shape;
    const queryFloats = layers * heads * this.rows * headSize;
    this.slab = this.pool.acquire(queryFloats + this.rows);
    this.queries = this.slab.subarray(0, queryFloats);
    this.positions = new Int32Array(this.slab.buffer, this.slab.byteOffset + queryFloats * 4, this.rows);
  }
}
