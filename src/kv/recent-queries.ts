import { float16ToFloat32 } from "../numerics/float16.js";
import type { RecentQueries } from "../policies/policy.js";
import type { KvArray, KvDtype } from "./layer-cache.js";
import type { SlabPool } from "./slab-pool.js";

export interface RingCheckpoint {
  /** Rows the ring kept (its slab, when allocated, holds that many). */
  rows: number;
  /** The slab's raw 4-byte words: queries in the KV dtype, then positions. */
  slab: Float32Array;
  count: number;
  next: number;
}

export interface QueryShape {
  layers: number;
  heads: number;
  headSize: number;
}

/** 4-byte words of the queries of `rows` rows in `kvDtype` (float16: two a word, rounded up). */
function queryWords({ layers, heads, headSize }: QueryShape, rows: number, kvDtype: KvDtype): number {
  const values = layers * heads * rows * headSize;
  return kvDtype === "float16" ? Math.ceil(values / 2) : values;
}

/** 4-byte words of a ring slab of `rows` rows: the queries, then one position a row (none for zero rows). */
export function ringWords(shape: QueryShape, rows: number, kvDtype: KvDtype): number {
  return rows === 0 ? 0 : queryWords(shape, rows, kvDtype) + rows;
}

function dtypeOf(array: KvArray): KvDtype {
  return array instanceof Uint16Array ? "float16" : "float32";
}

/**
 * The post-RoPE queries of a sequence's last `rows` tokens, per layer: what
 * attention scorers (SnapKV's window, NACL's proxies, TOVA's last row) need
 * to recompute attention over the cache as it is at eviction time. A ring in
 * one pooled slab: [L, Hq, rows, d] in the KV dtype (float16 bits in float16, as the
 * step graph gives them), then the rows' positions. How many rows it keeps follows
 * the policy named for the sequence (`resize`; docs/policies.md).
 */
export class RecentQueryRing {
  /** The pooled slab; `queries` and `positions` are views into it. */
  private slab: Float32Array = new Float32Array();
  private queries: KvArray = new Float32Array();
  private positions: Int32Array = new Int32Array();
  /** Rows held, and the slot the next row goes to. */
  private held = 0;
  private next = 0;
  private kept: number;

  constructor(
    private readonly pool: SlabPool,
    private readonly shape: QueryShape,
    rows: number,
    readonly kvDtype: KvDtype = "float32",
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
    return this.bytesFor(this.kept);
  }

  /** Bytes a ring of `rows` rows holds once allocated (what admission asks before a resize). */
  bytesFor(rows: number): number {
    return ringWords(this.shape, rows, this.kvDtype) * Float32Array.BYTES_PER_ELEMENT;
  }

  /**
   * Adds the last `count` rows of a step's queries (in the KV dtype), laid out [L, Hq, count, d]
   * (a batched step's: [L, batch, Hq, count, d], this sequence's being `member`),
   * whose first row has original position `firstPosition`.
   */
  push(queries: KvArray, count: number, firstPosition: number, batch = 1, member = 0): void {
    if (this.kept === 0 || count === 0) return;
    if (dtypeOf(queries) !== this.kvDtype) throw new Error(`recent-query ring holds ${this.kvDtype} queries; got ${dtypeOf(queries)}`);
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

  /** The rows held, oldest first, as policies read them: float32 (float16 rows decoded exactly). */
  view(): RecentQueries {
    const { layers, heads, headSize } = this.shape;
    const order = this.heldSlots();
    const queries = this.queries;
    return {
      count: this.held,
      positions: Int32Array.from(order, (slot) => this.positions[slot]),
      layers: Array.from({ length: layers }, (_, l) => {
        const out = new Float32Array(heads * this.held * headSize);
        for (let h = 0; h < heads; h++) {
          order.forEach((slot, i) => {
            const from = ((l * heads + h) * this.kept + slot) * headSize;
            const to = (h * this.held + i) * headSize;
            if (queries instanceof Uint16Array) float16ToFloat32(queries.subarray(from, from + headSize), out.subarray(to, to + headSize));
            else out.set(queries.subarray(from, from + headSize), to);
          });
        }
        return out;
      }),
    };
  }

  /** The slots of the rows held, oldest first. */
  private heldSlots(): number[] {
    const first = (this.next - this.held + this.kept) % Math.max(1, this.kept);
    return Array.from({ length: this.held }, (_, i) => (first + i) % this.kept);
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
    const keep = Math.min(this.held, rows);
    if (keep === 0) {
      this.release();
      this.kept = rows;
      return;
    }
    const slab = this.pool.acquire(ringWords(this.shape, rows, this.kvDtype), this.slab.byteLength);
    const { queries, positions } = this.layout(slab, rows);
    // The rows copy as stored (float16 bits stay bits): the newest `keep`, oldest first.
    this.heldSlots()
      .slice(this.held - keep)
      .forEach((slot, i) => {
        positions[i] = this.positions[slot];
        for (let l = 0; l < layers; l++) {
          for (let h = 0; h < heads; h++) {
            const from = ((l * heads + h) * this.kept + slot) * headSize;
            queries.set(this.queries.subarray(from, from + headSize), ((l * heads + h) * rows + i) * headSize);
          }
        }
      });
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
    const words = ringWords(this.shape, saved.rows, this.kvDtype);
    if (saved.slab.length !== 0 && saved.slab.length !== words) {
      throw new Error(`a ring of ${saved.rows} ${this.kvDtype} rows holds ${words} words; the saved one has ${saved.slab.length}`);
    }
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
    this.slab = this.pool.acquire(ringWords(this.shape, this.kept, this.kvDtype));
    ({ queries: this.queries, positions: this.positions } = this.layout(this.slab, this.kept));
  }

  /** Views of a slab of `rows` rows: the queries in the KV dtype, then the positions. */
  private layout(slab: Float32Array, rows: number): { queries: KvArray; positions: Int32Array } {
    const { layers, heads, headSize } = this.shape;
    const values = layers * heads * rows * headSize;
    const words = queryWords(this.shape, rows, this.kvDtype);
    return {
      queries: this.kvDtype === "float16" ? new Uint16Array(slab.buffer, slab.byteOffset, values) : slab.subarray(0, values),
      positions: new Int32Array(slab.buffer, slab.byteOffset + words * Float32Array.BYTES_PER_ELEMENT, rows),
    };
  }
}
