import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { KvArray, KvDtype } from "../../src/kv/layer-cache.js";
import { RecentQueryRing, type QueryShape } from "../../src/kv/recent-queries.js";
import { SlabPool } from "../../src/kv/slab-pool.js";
import { float16ToFloat32 } from "../../src/numerics/float16.js";

/**
 * A query element as the test writes it, naming its position, layer, head and index: in float32 a
 * number that spells them; in float16 distinct finite bits (shapes of at most 3 layers, heads and d).
 */
const element = (position: number, l: number, h: number, k: number) => position * 1000 + l * 100 + h * 10 + k;
const element16 = (position: number, l: number, h: number, k: number) => position * 27 + l * 9 + h * 3 + k;
/** The float32 a policy reads for that element. */
const read = (dtype: KvDtype, position: number, l: number, h: number, k: number) =>
  dtype === "float16" ? float16ToFloat32(Uint16Array.of(element16(position, l, h, k)))[0] : element(position, l, h, k);

/**
 * A step's queries for `count` tokens from `firstPosition`, laid out [L, batch, Hq, count, d] with this
 * sequence as `member` (the other members' rows are -1, or NaN bits in float16), in `dtype`.
 */
function stepQueries({ layers, heads, headSize }: QueryShape, count: number, firstPosition: number, batch = 1, member = 0, dtype: KvDtype = "float32"): KvArray {
  const size = layers * batch * heads * count * headSize;
  const out = dtype === "float16" ? new Uint16Array(size).fill(0xffff) : new Float32Array(size).fill(-1);
  const value = dtype === "float16" ? element16 : element;
  for (let l = 0; l < layers; l++)
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < count; i++)
        for (let k = 0; k < headSize; k++) out[((((l * batch + member) * heads + h) * count + i) * headSize) + k] = value(firstPosition + i, l, h, k);
  return out;
}

/** What `view()` should give when the ring holds the rows of `positions`, oldest first. */
function expectedView({ layers, heads, headSize }: QueryShape, positions: readonly number[], dtype: KvDtype = "float32") {
  return {
    count: positions.length,
    positions: Int32Array.from(positions),
    layers: Array.from({ length: layers }, (_, l) => {
      const out = new Float32Array(heads * positions.length * headSize);
      for (let h = 0; h < heads; h++) positions.forEach((p, i) => { for (let k = 0; k < headSize; k++) out[(h * positions.length + i) * headSize + k] = read(dtype, p, l, h, k); });
      return out;
    }),
  };
}

const shape: QueryShape = { layers: 2, heads: 3, headSize: 2 };

describe("RecentQueryRing", () => {
  it("takes its slab from the pool on the first push (or reserve), of exactly fullBytes", () => {
    const pool = new SlabPool(1 << 20);
    const ring = new RecentQueryRing(pool, shape, 4);
    expect(ring.fullBytes).toBe((2 * 3 * 4 * 2 + 4) * 4);
    expect(ring.bytes).toBe(0);
    expect(ring.view()).toEqual(expectedView(shape, []));
    ring.reserve();
    expect(ring.bytes).toBe(ring.fullBytes);
    expect(pool.used).toBe(ring.fullBytes);
    ring.push(stepQueries(shape, 1, 0), 1, 0);
    expect(pool.used).toBe(ring.fullBytes);
    ring.release();
    expect(ring.bytes).toBe(0);
    expect(pool.used).toBe(0);
  });

  it("keeps the last `rows` rows, oldest first, across pushes that wrap", () => {
    const ring = new RecentQueryRing(new SlabPool(1 << 20), shape, 4);
    ring.push(stepQueries(shape, 3, 0), 3, 0);
    expect(ring.view()).toEqual(expectedView(shape, [0, 1, 2]));
    ring.push(stepQueries(shape, 1, 3), 1, 3);
    ring.push(stepQueries(shape, 1, 4), 1, 4);
    expect(ring.view()).toEqual(expectedView(shape, [1, 2, 3, 4]));
    // A prefill longer than the ring: only its last rows.
    ring.push(stepQueries(shape, 10, 5), 10, 5);
    expect(ring.view()).toEqual(expectedView(shape, [11, 12, 13, 14]));
  });

  it("reads its own member's rows out of a batched step", () => {
    const ring = new RecentQueryRing(new SlabPool(1 << 20), shape, 3);
    ring.push(stepQueries(shape, 2, 7, 3, 2), 2, 7, 3, 2);
    ring.push(stepQueries(shape, 1, 9, 2, 0), 1, 9, 2, 0);
    expect(ring.view()).toEqual(expectedView(shape, [7, 8, 9]));
  });

  it("holds nothing and takes no memory with zero rows", () => {
    const pool = new SlabPool(1 << 20);
    const ring = new RecentQueryRing(pool, shape, 0);
    ring.reserve();
    ring.push(stepQueries(shape, 2, 0), 2, 0);
    expect(ring.fullBytes).toBe(0);
    expect(pool.used).toBe(0);
    expect(ring.view()).toEqual(expectedView(shape, []));
  });

  it("rolls back to a checkpoint's rows, and to no slab at all when it had none", () => {
    const pool = new SlabPool(1 << 20);
    const ring = new RecentQueryRing(pool, shape, 4);
    const none = ring.checkpoint();
    ring.push(stepQueries(shape, 3, 0), 3, 0);
    const saved = ring.checkpoint();
    ring.push(stepQueries(shape, 3, 3), 3, 3);
    expect(ring.view()).toEqual(expectedView(shape, [2, 3, 4, 5]));
    ring.rollback(saved);
    expect(ring.view()).toEqual(expectedView(shape, [0, 1, 2]));
    ring.rollback(none);
    expect(ring.view()).toEqual(expectedView(shape, []));
    expect(ring.bytes).toBe(0);
    expect(pool.used).toBe(0);
  });

  it("copies another ring into a slab of its own", () => {
    const pool = new SlabPool(1 << 20);
    const source = new RecentQueryRing(pool, shape, 4);
    source.push(stepQueries(shape, 6, 0), 6, 0);
    const copy = new RecentQueryRing(pool, shape, 4);
    copy.copyFrom(source);
    expect(copy.view()).toEqual(expectedView(shape, [2, 3, 4, 5]));
    expect(pool.used).toBe(2 * source.fullBytes);
    copy.push(stepQueries(shape, 1, 6), 1, 6);
    expect(source.view()).toEqual(expectedView(shape, [2, 3, 4, 5]));
    expect(copy.view()).toEqual(expectedView(shape, [3, 4, 5, 6]));
    const empty = new RecentQueryRing(pool, shape, 4);
    new RecentQueryRing(pool, shape, 4).copyFrom(empty);
    expect(pool.used).toBe(2 * source.fullBytes);
  });

  it("resizes to the policy's rows: the newest held rows stay, the pool holds the new size only", () => {
    const pool = new SlabPool(1 << 20);
    const ring = new RecentQueryRing(pool, shape, 4);
    ring.push(stepQueries(shape, 6, 0), 6, 0);
    ring.resize(2);
    expect(ring.view()).toEqual(expectedView(shape, [4, 5]));
    expect(pool.used).toBe(ring.fullBytes);
    expect(ring.fullBytes).toBe((2 * 3 * 2 * 2 + 2) * 4);
    ring.resize(3);
    expect(ring.view()).toEqual(expectedView(shape, [4, 5]));
    ring.push(stepQueries(shape, 2, 6), 2, 6);
    expect(ring.view()).toEqual(expectedView(shape, [5, 6, 7]));
    ring.resize(0);
    expect(ring.view()).toEqual(expectedView(shape, []));
    expect(pool.used).toBe(0);
    ring.push(stepQueries(shape, 2, 8), 2, 8);
    expect(pool.used).toBe(0);
  });

  it("a pool too small for the larger ring leaves the ring as it was", () => {
    const ring = new RecentQueryRing(new SlabPool((2 * 3 * 2 * 2 + 2) * 4 + 8), shape, 2);
    ring.push(stepQueries(shape, 2, 0), 2, 0);
    expect(() => ring.resize(4)).toThrow();
    expect(ring.rows).toBe(2);
    expect(ring.view()).toEqual(expectedView(shape, [0, 1]));
  });

  it("in float16 keeps the step's float16 bits, in half the query bytes, and decodes them for policies", () => {
    const pool = new SlabPool(1 << 20);
    const ring = new RecentQueryRing(pool, shape, 4, "float16");
    // [L, Hq, rows, d] halves, two to a 4-byte word, then a position a row.
    expect(ring.fullBytes).toBe(((2 * 3 * 4 * 2) / 2 + 4) * 4);
    ring.push(stepQueries(shape, 6, 0, 1, 0, "float16"), 6, 0);
    expect(ring.view()).toEqual(expectedView(shape, [2, 3, 4, 5], "float16"));
    expect(pool.used).toBe(ring.fullBytes);
    ring.resize(3);
    expect(ring.view()).toEqual(expectedView(shape, [3, 4, 5], "float16"));
    // An odd number of halves rounds up to a whole word.
    expect(new RecentQueryRing(pool, { layers: 1, heads: 1, headSize: 3 }, 1, "float16").fullBytes).toBe((2 + 1) * 4);
  });

  it("refuses queries of another dtype, and a checkpoint of another size", () => {
    const ring = new RecentQueryRing(new SlabPool(1 << 20), shape, 4, "float16");
    expect(() => ring.push(stepQueries(shape, 1, 0), 1, 0)).toThrow("recent-query ring holds float16 queries; got float32");
    const float32 = new RecentQueryRing(new SlabPool(1 << 20), shape, 4);
    float32.push(stepQueries(shape, 1, 0), 1, 0);
    expect(() => ring.rollback(float32.checkpoint())).toThrow(/a ring of 4 float16 rows holds 28 words; the saved one has 52/);
    expect(ring.bytes).toBe(0);
  });

  it.each(["float32", "float16"] as const)("property (%s): after any pushes, checkpoints and rollbacks the ring holds the last `rows` rows in order, and the pool counts its slab", (dtype) => {
    const op = fc.oneof(
      { arbitrary: fc.record({ kind: fc.constant("push" as const), count: fc.integer({ min: 0, max: 9 }), batch: fc.integer({ min: 1, max: 3 }), member: fc.nat(), gap: fc.integer({ min: 0, max: 2 }) }), weight: 4 },
      fc.record({ kind: fc.constant("checkpoint" as const) }),
      fc.record({ kind: fc.constant("rollback" as const) }),
      fc.record({ kind: fc.constant("release" as const) }),
      fc.record({ kind: fc.constant("resize" as const), rows: fc.integer({ min: 0, max: 6 }) }),
    );
    fc.assert(
      fc.property(
        fc.record({ layers: fc.integer({ min: 1, max: 3 }), heads: fc.integer({ min: 1, max: 3 }), headSize: fc.integer({ min: 1, max: 3 }) }),
        fc.integer({ min: 0, max: 6 }),
        fc.array(op, { maxLength: 30 }),
        (queryShape, rows, ops) => {
          const pool = new SlabPool(1 << 20);
          const ring = new RecentQueryRing(pool, queryShape, rows, dtype);
          let pushed: number[] = [];
          let kept = rows;
          let saved: { checkpoint: ReturnType<RecentQueryRing["checkpoint"]>; pushed: number[]; kept: number } | null = null;
          let next = 0;
          for (const o of ops) {
            if (o.kind === "push") {
              const member = o.member % o.batch;
              next += o.gap;
              ring.push(stepQueries(queryShape, o.count, next, o.batch, member, dtype), o.count, next, o.batch, member);
              for (let i = 0; i < o.count; i++) pushed.push(next + i);
              next += o.count;
            } else if (o.kind === "checkpoint") {
              saved = { checkpoint: ring.checkpoint(), pushed: [...pushed], kept };
            } else if (o.kind === "rollback") {
              if (!saved) continue;
              ring.rollback(saved.checkpoint);
              pushed = [...saved.pushed];
              kept = saved.kept;
            } else if (o.kind === "resize") {
              ring.resize(o.rows);
              // Rows dropped by a smaller ring are gone for good.
              pushed = kept === 0 || o.rows === 0 ? [] : pushed.slice(-Math.min(kept, o.rows));
              kept = o.rows;
            } else {
              ring.release();
              pushed = [];
              saved = null;
            }
            const held = kept === 0 ? [] : pushed.slice(-kept);
            expect(ring.rows).toBe(kept);
            expect(ring.view()).toEqual(expectedView(queryShape, held, dtype));
            expect(pool.used).toBe(ring.bytes);
            expect(ring.bytes === 0 || ring.bytes === ring.fullBytes).toBe(true);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
