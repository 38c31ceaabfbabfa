import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ARENA_PAD, BatchArena, type ArenaView } from "../../src/kv/batch-arena.js";
import { LayerCache, type KvDtype, type KvShape } from "../../src/kv/layer-cache.js";
import { SlabPool } from "../../src/kv/slab-pool.js";
import { runToEnd } from "../../src/numerics/sliced-work.js";
import { ResidentInputs, type Relaid, type ResidentFeed } from "../../src/model/runners/resident-inputs.js";
import { appendRows, empty, type Expected } from "./support/layer-contents.js";

/**
 * Asserts that `view` lays out `caches` as the step graph reads a batch: member b's head h in run
 * (b * Hkv + h) of `capacity` slots, its entries first, in order, masked 0, the rest of the run -inf;
 * the stores may hold more slots after the batch's.
 */
function expectLaidOut(view: ArenaView, caches: readonly LayerCache[], { kvHeads, headSize }: KvShape): void {
  const C = view.capacity;
  expect(C).toBeGreaterThanOrEqual(Math.max(1, ...caches.map((cache) => cache.maxLength)));
  expect(view.mask.length % (kvHeads * C)).toBe(0);
  expect(view.mask.length).toBeGreaterThanOrEqual(caches.length * kvHeads * C);
  expect(view.keyStore.length).toBe(view.mask.length * headSize);
  expect(view.valueStore.length).toBe(view.keyStore.length);
  caches.forEach((cache, b) => {
    for (let h = 0; h < kvHeads; h++) {
      const run = (b * kvHeads + h) * C;
      const n = cache.lengths[h];
      const from = cache.offsets[h] * headSize;
      expect(Array.from(view.keyStore.subarray(run * headSize, (run + n) * headSize))).toEqual(Array.from(cache.keyStore.subarray(from, from + n * headSize)));
      expect(Array.from(view.valueStore.subarray(run * headSize, (run + n) * headSize))).toEqual(Array.from(cache.valueStore.subarray(from, from + n * headSize)));
      expect(Array.from(view.mask.subarray(run, run + n))).toEqual(new Array(n).fill(0));
      expect(Array.from(view.mask.subarray(run + n, run + C))).toEqual(new Array(C - n).fill(-Infinity));
    }
  });
}

interface Member {
  readonly layers: readonly LayerCache[];
  readonly name: string;
}

describe.each<KvDtype>(["float32", "float16"])("BatchArena (%s)", (kvDtype) => {
  const shape: KvShape = { kvHeads: 2, headSize: 3, kvDtype };
  const bytesPerKv = kvDtype === "float16" ? 2 : 4;

  function sequence(pool: SlabPool, name: string, lengths: number[], stream: { n: number }): Member & { expected: Expected[] } {
    const layers = lengths.map(() => new LayerCache(pool, shape));
    const expected = layers.map(() => empty(shape.kvHeads));
    layers.forEach((layer, l) => {
      layer.reserve(lengths[l]);
      if (lengths[l] > 0) appendRows(layer, expected[l], lengths[l], 0, layer.capacity, stream);
    });
    return { layers, name, expected };
  }

  it("lays out a batch [B, Hkv, C, d] per layer, C fitting the longest head, and counts its bytes", () => {
    const pool = new SlabPool(1 << 22);
    const stream = { n: 1 };
    const a = sequence(pool, "a", [3, 20], stream);
    const b = sequence(pool, "b", [5, 1], stream);
    const arena = new BatchArena(2, shape);
    expect(arena.bytes).toBe(0);
    const views = runToEnd(arena.gather([a.layers, b.layers]));
    expect(views.map((view) => view.capacity)).toEqual([16, 32]);
    expectLaidOut(views[0], [a.layers[0], b.layers[0]], shape);
    expectLaidOut(views[1], [a.layers[1], b.layers[1]], shape);
    // What the stores take, and the room kept past them (under twice as much).
    const entries = 2 * 2 * (16 + 32);
    expect(arena.bytes).toBeGreaterThanOrEqual(entries * (2 * 3 * bytesPerKv + 4));
    expect(arena.bytes).toBeLessThan(2 * entries * (2 * 3 * bytesPerKv + 4));
    // The arena is a working copy outside the pool: sequences' bytes are unchanged.
    expect(pool.used).toBe([...a.layers, ...b.layers].reduce((sum, layer) => sum + layer.bytes, 0));
    arena.clear();
    expect(arena.bytes).toBe(0);
  });

  it("follows appends, evictions, rollbacks and resizes of its members between steps", () => {
    const pool = new SlabPool(1 << 22);
    const stream = { n: 7 };
    const a = sequence(pool, "a", [4], stream);
    const b = sequence(pool, "b", [2], stream);
    const arena = new BatchArena(1, shape);
    expectLaidOut(runToEnd(arena.gather([a.layers, b.layers]))[0], [a.layers[0], b.layers[0]], shape);

    const [la] = a.layers;
    const [lb] = b.layers;
    la.reserve(1);
    appendRows(la, a.expected[0], 1, 0, la.capacity, stream);
    lb.reserve(1);
    appendRows(lb, b.expected[0], 1, 0, lb.capacity, stream);
    expectLaidOut(runToEnd(arena.gather([a.layers, b.layers]))[0], [la, lb], shape);

    la.retain([Int32Array.from([0, 4]), Int32Array.from([1, 2, 3])]);
    const saved = lb.checkpoint();
    lb.reserve(3);
    appendRows(lb, b.expected[0], 3, 0, lb.capacity, stream);
    expectLaidOut(runToEnd(arena.gather([a.layers, b.layers]))[0], [la, lb], shape);
    lb.rollback(saved);
    expectLaidOut(runToEnd(arena.gather([a.layers, b.layers]))[0], [la, lb], shape);
    // Grows past the arena's capacity: every slot is laid out again.
    la.reserve(20);
    appendRows(la, a.expected[0], 20, 0, la.capacity, stream);
    expectLaidOut(runToEnd(arena.gather([a.layers, b.layers]))[0], [la, lb], shape);
    // b leaves, then comes back in another slot.
    expectLaidOut(runToEnd(arena.gather([a.layers]))[0], [la], shape);
    expectLaidOut(runToEnd(arena.gather([b.layers, a.layers]))[0], [lb, la], shape);
    // Released and refilled to the same lengths: the new contents, not the old copy.
    lb.release();
    lb.reserve(3);
    appendRows(lb, (b.expected[0] = empty(2)), 3, 0, lb.capacity, stream);
    expectLaidOut(runToEnd(arena.gather([b.layers, a.layers]))[0], [lb, la], shape);
  });

  it("between steps, keeps its stores through appends and fresh copies of single slots, and lays them out anew from the old ones on a resize (what lets a session thread keep the arena)", () => {
    const pool = new SlabPool(1 << 22);
    const stream = { n: 11 };
    const [a, b, c] = ["a", "b", "c"].map((name) => sequence(pool, name, [2], stream));
    const arena = new BatchArena(1, shape);
    const first = runToEnd(arena.gather([a.layers, b.layers]))[0];
    expect(Array.from(first.lengths)).toEqual([2, 2, 2, 2]);
    const rowRevisions = Array.from(first.rowRevisions);
    a.layers[0].reserve(1);
    appendRows(a.layers[0], a.expected[0], 1, 0, a.layers[0].capacity, stream);
    const appended = runToEnd(arena.gather([a.layers, b.layers]))[0];
    expect(appended.revision).toBe(first.revision);
    expect([appended.keyStore, appended.valueStore, appended.mask, appended.lengths]).toEqual([first.keyStore, first.valueStore, first.mask, first.lengths]);
    expect(appended.keyStore).toBe(first.keyStore);
    expect(Array.from(appended.lengths)).toEqual([3, 3, 2, 2]);
    expect(Array.from(appended.rowRevisions)).toEqual(rowRevisions);
    // c takes b's slot: that slot's rows are copied afresh, which is not an append; the other slot's are untouched.
    const replaced = runToEnd(arena.gather([a.layers, c.layers]))[0];
    expect(replaced.keyStore).toBe(first.keyStore);
    expect(replaced.revision).toBe(first.revision);
    expect(Array.from(replaced.rowRevisions).map((n, row) => n - rowRevisions[row])).toEqual([0, 0, 1, 1]);
    // A smaller batch reads the same stores' first slot.
    const alone = runToEnd(arena.gather([a.layers]))[0];
    expect(alone.keyStore).toBe(first.keyStore);
    expect(alone.revision).toBe(first.revision);
    // A larger one than the arena has room for resizes it: the stores are laid out anew from the old ones, keeping their entries.
    const long = sequence(pool, "long", [40], stream);
    const larger = runToEnd(arena.gather([a.layers, c.layers, long.layers]))[0];
    expect(larger.capacity).toBeGreaterThan(first.capacity);
    expect(larger.revision).toBe(first.revision);
    expect(larger.relaidFrom?.keyStore).toBe(first.keyStore);
    // Slots kept keep their rows; the newcomer's slot is copied afresh.
    expect(Array.from(larger.rowRevisions).map((n, row) => n - (rowRevisions[row] ?? 0))).toEqual([0, 0, 1, 1, 1, 1]);
    // Resized again, it is laid out over the memory it holds where that has room (fresh memory is slow to touch).
    const bytes = arena.bytes;
    const shorter = runToEnd(arena.gather([c.layers]))[0];
    expect(shorter.capacity).toBeLessThan(larger.capacity);
    expect(shorter.relaidFrom?.keyStore).toBe(larger.keyStore);
    expect(shorter.keyStore.buffer).toBe(larger.keyStore.buffer);
    expect(arena.bytes).toBe(bytes);
    // Once stepped, what it was laid out from is forgotten.
    expect(runToEnd(arena.gather([c.layers]))[0].relaidFrom).toBeNull();
  });

  it("lays a batch out in slices, yielding between layers and between the stores of a resize, busy till done", () => {
    const pool = new SlabPool(1 << 22);
    const stream = { n: 5 };
    const [a, b] = ["a", "b"].map((name) => sequence(pool, name, [3, 3], stream));
    const arena = new BatchArena(2, shape);
    const yields = (batch: Member[]) => {
      const work = arena.gather(batch.map((m) => m.layers));
      let count = 0;
      for (let step = work.next(); !step.done; step = work.next()) {
        expect(arena.busy).toBe(true);
        count++;
      }
      expect(arena.busy).toBe(false);
      return count;
    };
    // Sized for the first time, then as it is: a yield between the three stores of a resize, and after each layer.
    expect(yields([a, b])).toBe(2 * (2 + 1));
    expect(yields([a, b])).toBe(2);
  });

  it("arranges a batch so that members keep their slots, and newcomers fill the rest in order", () => {
    const pool = new SlabPool(1 << 22);
    const stream = { n: 3 };
    const [a, b, c, d] = ["a", "b", "c", "d"].map((name) => sequence(pool, name, [1], stream));
    const arena = new BatchArena(1, shape);
    const first = arena.arrange([a, b, c]);
    expect(first.map((m) => m.name)).toEqual(["a", "b", "c"]);
    runToEnd(arena.gather(first.map((m) => m.layers)));
    expect(arena.arrange([d, c, a]).map((m) => m.name)).toEqual(["a", "d", "c"]);
    // b had slot 1, but a batch of one has only slot 0.
    expect(arena.arrange([b]).map((m) => m.name)).toEqual(["b"]);
  });
});

/**
 * A session thread's copies of the arena's stores, kept as the step runner keeps them (ResidentInputs
 * decides what is sent; the copy is updated as onnx-session-worker.js does): each gathered view, sent
 * whole, or as its appended entries and fresh rows after laying out the copy of the stores it was
 * resized from, must leave the thread's copy equal to the view's stores.
 */
function threadCopies() {
  const thread = {};
  const inputs = new ResidentInputs<object>(() => undefined, 0);
  type Copy = Float32Array | Uint16Array;
  const copies = new Map<number, Copy>();
  const relaid = ({ from, fromRowSlots, rowSlots, width, length, pad }: Relaid): Copy => {
    const old = copies.get(from)!;
    copies.delete(from);
    const copy = new (old.constructor as Float32ArrayConstructor)(length).fill(pad);
    const kept = Math.min(fromRowSlots, rowSlots) * width;
    const rows = Math.min(old.length / (fromRowSlots * width), length / (rowSlots * width));
    for (let row = 0; row < rows; row++) copy.set(old.subarray(row * fromRowSlots * width, row * fromRowSlots * width + kept), row * rowSlots * width);
    return copy;
  };
  const apply = (feed: ResidentFeed, data: ArrayBufferView | null, store: Copy) => {
    if (feed.whole) copies.set(feed.id, store.slice());
    else {
      if (feed.relaid) copies.set(feed.id, relaid(feed.relaid));
      const copy = copies.get(feed.id)!;
      const values = data as Float32Array;
      let at = 0;
      feed.starts.forEach((start, i) => {
        copy.set(values.subarray(at, at + feed.counts[i]), start);
        at += feed.counts[i];
      });
    }
    return copies.get(feed.id)!;
  };
  const held = new WeakSet<object>();
  return (view: ArenaView, headSize: number) => {
    const stores = [
      [view.keyStore, headSize, view.relaidFrom?.keyStore, ARENA_PAD.kv],
      [view.valueStore, headSize, view.relaidFrom?.valueStore, ARENA_PAD.kv],
      [view.mask, 1, view.relaidFrom?.mask, ARENA_PAD.mask],
    ] as const;
    for (const [store, width, from, pad] of stores) {
      const appendable = { revision: view.revision, lengths: view.lengths, rowRevisions: view.rowRevisions, rowSlots: view.capacity, width, relaidFrom: from && { store: from, pad } };
      const sent = inputs.send(store, appendable, thread, (n) => new (store.constructor as Float32ArrayConstructor)(n) as never);
      // Sent whole only when the thread holds no copy of it or of what it was resized from: whoever joins or leaves, whatever the size.
      expect(sent.feed.whole).toBe(!held.has(store) && !(from && held.has(from)));
      held.add(store);
      expect(Array.from(apply(sent.feed, sent.data, store))).toEqual(Array.from(store));
    }
  };
}

describe("BatchArena properties", () => {
  it("after any appends, evictions, rollbacks and releases between steps, every gathered batch matches its members' caches, and so does a session thread's copy updated with only the appended entries and rows copied afresh", () => {
    const op = fc.oneof(
      { arbitrary: fc.record({ kind: fc.constant("append" as const), seq: fc.nat(3), layer: fc.nat(1), count: fc.integer({ min: 1, max: 20 }) }), weight: 4 },
      fc.record({ kind: fc.constant("retain" as const), seq: fc.nat(3), layer: fc.nat(1), picks: fc.array(fc.boolean(), { maxLength: 64 }) }),
      fc.record({ kind: fc.constant("undo" as const), seq: fc.nat(3), layer: fc.nat(1), count: fc.integer({ min: 1, max: 20 }), seen: fc.boolean() }),
      fc.record({ kind: fc.constant("release" as const), seq: fc.nat(3) }),
      { arbitrary: fc.record({ kind: fc.constant("gather" as const), members: fc.subarray([0, 1, 2, 3], { minLength: 1 }), shuffle: fc.nat() }), weight: 4 },
      fc.record({ kind: fc.constant("clear" as const) }),
    );
    fc.assert(
      fc.property(
        fc.record({ kvHeads: fc.integer({ min: 1, max: 3 }), headSize: fc.integer({ min: 1, max: 3 }), kvDtype: fc.constantFrom<KvDtype>("float32", "float16") }),
        fc.array(op, { maxLength: 40 }),
        (shape, ops) => {
          const pool = new SlabPool(1 << 24);
          const sequences = Array.from({ length: 4 }, (_, i) => ({ name: String(i), layers: [new LayerCache(pool, shape), new LayerCache(pool, shape)] }));
          const expected = sequences.map(() => [empty(shape.kvHeads), empty(shape.kvHeads)]);
          const arena = new BatchArena(2, shape);
          const stream = { n: 1 };
          const onThread = threadCopies();
          let last: typeof sequences = [];
          for (const o of ops) {
            if (o.kind === "append") {
              const layer = sequences[o.seq].layers[o.layer];
              layer.reserve(o.count);
              appendRows(layer, expected[o.seq][o.layer], o.count, 0, layer.capacity, stream);
            } else if (o.kind === "retain") {
              const layer = sequences[o.seq].layers[o.layer];
              layer.retain(Array.from(layer.lengths, (n) => Int32Array.from(Array(n).keys()).filter((i) => o.picks[i] ?? true)));
            } else if (o.kind === "undo") {
              // A failed step: appended, then rolled back.
              const layer = sequences[o.seq].layers[o.layer];
              const saved = layer.checkpoint();
              layer.reserve(o.count);
              appendRows(layer, empty(shape.kvHeads).map((_, h) => [...expected[o.seq][o.layer][h]]), o.count, 0, layer.capacity, stream);
              if (o.seen) {
                // The arena copied the entries that are then rolled back.
                const batch = arena.arrange([sequences[o.seq]]);
                runToEnd(arena.gather(batch.map((m) => m.layers)));
                last = batch;
              }
              layer.rollback(saved);
            } else if (o.kind === "release") {
              sequences[o.seq].layers.forEach((layer) => layer.release());
            } else if (o.kind === "clear") {
              arena.clear();
              last = []; // a cleared arena remembers no slots
            } else {
              const members = o.members.map((i) => sequences[i]);
              for (let i = members.length - 1; i > 0; i--) {
                const j = (o.shuffle + i) % (i + 1);
                [members[i], members[j]] = [members[j], members[i]];
              }
              const batch = arena.arrange(members);
              // A permutation of the members, in which those that stay keep their slots.
              expect([...batch].sort((x, y) => x.name.localeCompare(y.name))).toEqual([...members].sort((x, y) => x.name.localeCompare(y.name)));
              last.forEach((member, slot) => {
                if (slot < batch.length && members.includes(member)) expect(batch[slot]).toBe(member);
              });
              const views = runToEnd(arena.gather(batch.map((m) => m.layers)));
              views.forEach((view, l) => expectLaidOut(view, batch.map((m) => m.layers[l]), shape));
              // What a session thread keeps of the views, given only what was appended, is the views.
              views.forEach((view) => onThread(view, shape.headSize));
              last = batch;
            }
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
