import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { KvBudgetExceeded, SlabPool } from "../../src/kv/slab-pool.js";

const F = Float32Array.BYTES_PER_ELEMENT;

describe("SlabPool", () => {
  it("counts an acquired slab as used and hands it out zero-filled", () => {
    const pool = new SlabPool(1024);
    const slab = pool.acquire(10);
    expect(slab.length).toBe(10);
    expect([...slab]).toEqual(new Array(10).fill(0));
    expect(pool.used).toBe(40);
    expect(pool.pooled).toBe(0);
    expect(pool.available).toBe(1024 - 40);
  });

  it("keeps a released slab and hands the same one out again, zeroed, for the same size only", () => {
    const pool = new SlabPool(1024);
    const slab = pool.acquire(8);
    slab.fill(7);
    pool.release(slab);
    expect(pool.used).toBe(0);
    expect(pool.pooled).toBe(32);

    const other = pool.acquire(4);
    expect(other).not.toBe(slab);
    expect(pool.pooled).toBe(32);

    const again = pool.acquire(8);
    expect(again).toBe(slab);
    expect([...again]).toEqual(new Array(8).fill(0));
    expect(pool.used).toBe(48);
    expect(pool.pooled).toBe(0);
    // Handed out once: a second slab of that size is a new one.
    expect(pool.acquire(8)).not.toBe(slab);
  });

  it("refuses an allocation past the budget with the bytes requested and free, changing nothing", () => {
    const pool = new SlabPool(100);
    pool.acquire(20); // 80 bytes
    let thrown: unknown;
    try {
      pool.acquire(6); // 24 bytes
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(KvBudgetExceeded);
    expect(thrown).toMatchObject({ requestedBytes: 24, freeBytes: 20 });
    expect(pool.used).toBe(80);
    // Exactly the budget fits.
    pool.acquire(5);
    expect(pool.used).toBe(100);
    expect(pool.available).toBe(0);
  });

  it("counts a slab being replaced as free (releasingBytes), so a cache can move with the budget full", () => {
    const pool = new SlabPool(100);
    const old = pool.acquire(20); // 80 bytes
    expect(() => pool.assertRoom(60)).toThrow(KvBudgetExceeded);
    expect(() => pool.assertRoom(60, 80)).not.toThrow();
    expect(() => pool.assertRoom(101, 80)).toThrow(KvBudgetExceeded);
    const replacement = pool.acquire(15, old.byteLength); // 60 bytes
    expect(pool.used).toBe(140); // both held until the caller releases the old one
    pool.release(old);
    expect(pool.used).toBe(60);
    expect(pool.used + pool.pooled).toBeLessThanOrEqual(100);
    expect(replacement.length).toBe(15);
  });

  it("drops pooled slabs so that held plus pooled bytes never exceed the budget", () => {
    const pool = new SlabPool(100);
    const a = pool.acquire(10); // 40
    const b = pool.acquire(10); // 40
    pool.release(a);
    expect(pool.pooled).toBe(40);
    // 40 held + 40 pooled + 20 new = 100: fits and keeps the pooled one.
    pool.acquire(5);
    expect(pool.used).toBe(60);
    expect(pool.pooled).toBe(40);
    // A new size that only fits if the pooled slab goes.
    pool.release(b);
    expect(pool.used).toBe(20);
    expect(pool.used + pool.pooled).toBeLessThanOrEqual(100);
    pool.acquire(15); // 60 new bytes
    expect(pool.used).toBe(80);
    expect(pool.used + pool.pooled).toBeLessThanOrEqual(100);
  });

  it("counts device bytes as used, trims the pool for them, and gives them back", () => {
    const pool = new SlabPool(100);
    pool.release(pool.acquire(20)); // 80 bytes pooled
    pool.adjustDeviceBytes(40);
    expect(pool.used).toBe(40);
    expect(pool.deviceBytes).toBe(40);
    expect(pool.pooled).toBe(0);
    pool.adjustDeviceBytes(-40);
    expect(pool.used).toBe(0);
    expect(pool.deviceBytes).toBe(0);
  });

  type Op = { kind: "acquire"; floats: number } | { kind: "release"; pick: number } | { kind: "device"; bytes: number };
  const ops = fc.array(
    fc.oneof(
      fc.record({ kind: fc.constant("acquire" as const), floats: fc.constantFrom(2, 5, 8, 16, 32) }), // few sizes, as LayerCache asks, so slabs are reused
      fc.record({ kind: fc.constant("release" as const), pick: fc.nat() }),
      fc.record({ kind: fc.constant("device" as const), bytes: fc.integer({ min: -64, max: 64 }) }),
    ),
    { maxLength: 80 },
  ) as fc.Arbitrary<Op[]>;

  it("property: bytes accounted equal bytes held, held + pooled fits the budget, refusals are exact, and slabs in use never share memory", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1000 }), ops, (budget, script) => {
        const pool = new SlabPool(budget);
        const held: { slab: Float32Array; mark: number }[] = [];
        let device = 0;
        let mark = 0;
        for (const op of script) {
          if (op.kind === "acquire") {
            const bytes = op.floats * F;
            const fits = pool.used + bytes <= budget;
            if (!fits) {
              expect(() => pool.acquire(op.floats)).toThrow(KvBudgetExceeded);
            } else {
              const slab = pool.acquire(op.floats);
              expect(slab.length).toBe(op.floats);
              expect(slab.every((x) => x === 0)).toBe(true);
              // Every slab in use carries its own mark in every element: a shared byte would overwrite one.
              slab.fill(++mark);
              held.push({ slab, mark });
            }
          } else if (op.kind === "release") {
            if (held.length === 0) continue;
            const [{ slab }] = held.splice(op.pick % held.length, 1);
            pool.release(slab);
          } else {
            // Device memory is taken only with room (the engine asserts first) and never below zero.
            const delta = Math.max(-device, op.bytes);
            if (delta > 0 && pool.used + delta > budget) continue;
            pool.adjustDeviceBytes(delta);
            device += delta;
          }
          const heldBytes = held.reduce((sum, { slab }) => sum + slab.byteLength, 0);
          expect(pool.used).toBe(heldBytes + device);
          expect(pool.deviceBytes).toBe(device);
          expect(pool.pooled).toBeGreaterThanOrEqual(0);
          expect(pool.used + pool.pooled).toBeLessThanOrEqual(budget);
          for (const { slab, mark } of held) expect(slab.every((x) => x === mark)).toBe(true);
          for (let i = 0; i < held.length; i++) {
            for (let j = i + 1; j < held.length; j++) {
              const a = held[i].slab;
              const b = held[j].slab;
              const disjoint = a.buffer !== b.buffer || a.byteOffset + a.byteLength <= b.byteOffset || b.byteOffset + b.byteLength <= a.byteOffset;
              expect(disjoint).toBe(true);
            }
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
