import { hostLayer } from "./host-layer.js";
import type { KvLayer } from "./kv-layer.js";
import { capacityFor, type KvArray, type KvShape, type LayerCache } from "./layer-cache.js";

/** Whose entries one batch slot of one layer holds, as of which of its revisions. */
interface SlotCopy {
  cache: LayerCache;
  revision: number;
}

/** A layer's stores. */
interface ArenaStores {
  keyStore: KvArray;
  valueStore: KvArray;
  mask: Float32Array;
}

/** A layer's stores as a step reads them (PastLayer): its first B slots are the batch's. */
export interface ArenaView extends ArenaStores {
  capacity: number;
  lengths: Int32Array;
  rowRevisions: Int32Array;
  revision: number;
  /** The stores these were laid out from (relaid) by a resize for this step, if that kept their contents. */
  relaidFrom: ArenaStores | null;
}

/** What fills the slots past a row's entries: keys and values 0, the mask -inf. */
export const ARENA_PAD = { kv: 0, mask: -Infinity } as const;

/** One layer of the arena: B slots side by side, [slots, Hkv, capacity, d] keys and values, [slots, Hkv, capacity] mask. */
class ArenaLayer {
  capacity = 0;
  slots = 0;
  keyStore: KvArray;
  valueStore: KvArray;
  mask = new Float32Array();
  copies: (SlotCopy | null)[] = [];
  /**
   * Entries copied per row (slot * Hkv + head). Between steps the rows only gain entries at their
   * ends, or are copied afresh (`rowRevisions`), while `revision` stays, so a session thread can keep
   * the arena and be sent only those (docs/worker-threads.md), as it keeps a lone sequence's cache.
   */
  lengths = new Int32Array();
  /** Per row, counts its fresh copies (another sequence took the slot, or its own cache changed other than by appends). */
  rowRevisions = new Int32Array();
  /** Counts releases: a copy of the stores from before one is not carried over. */
  revision = 0;
  relaidFrom: ArenaStores | null = null;

  constructor(private readonly shape: KvShape) {
    this.keyStore = this.kvArray(0);
    this.valueStore = this.kvArray(0);
  }

  /** The memory held, room kept past the stores included. */
  get bytes(): number {
    return this.keyStore.buffer.byteLength + this.valueStore.buffer.byteLength + this.mask.buffer.byteLength;
  }

  /**
   * Sizes the layer for `slots` sequences of up to `needed` entries per head. A resize lays every row out
   * anew keeping its entries (relaid), so neither the members nor a session thread's copy are sent again:
   * the thread lays its copy out the same way (docs/worker-threads.md).
   */
  *fit(slots: number, needed: number): Generator<void, void> {
    this.relaidFrom = null;
    // Grow with headroom, and shrink once the batch needs under half.
    const capacity = needed > this.capacity ? capacityFor(this.capacity, needed) : 2 * needed < this.capacity ? capacityFor(0, needed) : this.capacity;
    if (capacity === this.capacity && slots <= this.slots) return;
    const { kvHeads, headSize } = this.shape;
    const from = { capacity: this.capacity, keyStore: this.keyStore, valueStore: this.valueStore, mask: this.mask };
    const rows = Math.max(slots, this.slots) * kvHeads;
    // Megabytes each on a large batch: the event loop may turn between them (gather).
    this.keyStore = relaid(from.keyStore, from.capacity, rows, capacity, headSize, ARENA_PAD.kv);
    yield;
    this.valueStore = relaid(from.valueStore, from.capacity, rows, capacity, headSize, ARENA_PAD.kv);
    yield;
    this.mask = relaid(from.mask, from.capacity, rows, capacity, 1, ARENA_PAD.mask);
    this.relaidFrom = from.capacity > 0 ? from : null;
    this.capacity = capacity;
    this.slots = rows / kvHeads;
    // A slot whose entries no longer all fit keeps those that do, and is copied afresh at its next sync.
    const fits = (slot: number) => this.lengths.subarray(slot * kvHeads, (slot + 1) * kvHeads).every((n) => n <= capacity);
    this.copies = Array.from({ length: this.slots }, (_, slot) => (fits(slot) ? (this.copies[slot] ?? null) : null));
    this.lengths = Int32Array.from({ length: rows }, (_, row) => Math.min(this.lengths[row] ?? 0, capacity));
    this.rowRevisions = Int32Array.from({ length: rows }, (_, row) => this.rowRevisions[row] ?? 0);
  }

  /** Brings slot `slot` up to date with `cache`: only the entries appended since its last copy, when it can. */
  sync(slot: number, cache: LayerCache): void {
    const { kvHeads, headSize } = this.shape;
    const copy = this.copies[slot];
    const copied = this.lengths.subarray(slot * kvHeads, (slot + 1) * kvHeads);
    if (!copy || copy.cache !== cache || copy.revision !== cache.revision) {
      this.copies[slot] = { cache, revision: cache.revision };
      copied.fill(0);
      this.mask.fill(-Infinity, slot * kvHeads * this.capacity, (slot + 1) * kvHeads * this.capacity);
      for (let h = 0; h < kvHeads; h++) this.rowRevisions[slot * kvHeads + h]++;
    }
    for (let h = 0; h < kvHeads; h++) {
      const from = copied[h];
      const to = cache.lengths[h];
      if (from === to) continue;
      const source = cache.offsets[h];
      const target = (slot * kvHeads + h) * this.capacity;
      if (to - from === 1) {
        // The common step: one new entry of a few values; a loop beats three subarray views.
        for (let k = 0; k < headSize; k++) {
          this.keyStore[(target + from) * headSize + k] = cache.keyStore[(source + from) * headSize + k];
          this.valueStore[(target + from) * headSize + k] = cache.valueStore[(source + from) * headSize + k];
        }
        this.mask[target + from] = cache.mask[source + from];
      } else {
        this.keyStore.set(cache.keyStore.subarray((source + from) * headSize, (source + to) * headSize), (target + from) * headSize);
        this.valueStore.set(cache.valueStore.subarray((source + from) * headSize, (source + to) * headSize), (target + from) * headSize);
        this.mask.set(cache.mask.subarray(source + from, source + to), target + from);
      }
      copied[h] = to;
    }
  }

  /**
   * The stores whole, with what a session thread needs to keep them (PastLayer): a step reads the first
   * B slots. The same stores whatever the batch size, so that a thread keeps one copy across sizes.
   */
  view(): ArenaView {
    const { capacity, keyStore, valueStore, mask, lengths, rowRevisions, revision, relaidFrom } = this;
    return { capacity, keyStore, valueStore, mask, lengths, rowRevisions, revision, relaidFrom };
  }

  release(): void {
    this.capacity = 0;
    this.slots = 0;
    this.keyStore = this.kvArray(0);
    this.valueStore = this.kvArray(0);
    this.mask = new Float32Array();
    this.copies = [];
    this.lengths = new Int32Array();
    this.rowRevisions = new Int32Array();
    this.relaidFrom = null;
    this.revision++;
  }

  private kvArray(length: number): KvArray {
    return this.shape.kvDtype === "float16" ? new Uint16Array(length) : new Float32Array(length);
  }
}

/**
 * `store`, rows of `fromSlots` slots of `width` values, laid out anew as `rows` rows of `toSlots` slots:
 * each row keeps its first slots, as many as fit, and the rest is `pad`. In place when `store`'s memory
 * has room (fresh memory is slow to touch: page faults cost 3 ms a MiB on the 2-core VM), else in new
 * memory with room to grow into (the next power of two in bytes).
 */
function relaid<T extends KvArray>(store: T, fromSlots: number, rows: number, toSlots: number, width: number, pad: number): T {
  const Kind = store.constructor as new (buffer: ArrayBuffer, byteOffset: number, length: number) => T;
  const bytes = rows * toSlots * width * store.BYTES_PER_ELEMENT;
  const buffer = store.buffer.byteLength >= bytes ? store.buffer : new ArrayBuffer(2 ** Math.ceil(Math.log2(Math.max(1, bytes))));
  const to = new Kind(buffer as ArrayBuffer, 0, rows * toSlots * width);
  // In place, rows move within the whole memory (the old layout may reach past the new one).
  const room = buffer === store.buffer ? new Kind(buffer as ArrayBuffer, 0, buffer.byteLength / store.BYTES_PER_ELEMENT) : null;
  const moved = fromSlots === 0 ? 0 : Math.min(rows, store.length / (fromSlots * width));
  const kept = Math.min(fromSlots, toSlots) * width;
  const move = (row: number) => {
    const [source, target] = [row * fromSlots * width, row * toSlots * width];
    if (room) room.copyWithin(target, source, source + kept);
    else to.set(store.subarray(source, source + kept) as never, target);
    to.fill(pad, target + kept, target + toSlots * width);
  };
  // In place, growing rows move up: the last first, so that no row is overwritten before it moves.
  if (toSlots > fromSlots) for (let row = moved - 1; row >= 0; row--) move(row);
  else for (let row = 0; row < moved; row++) move(row);
  to.fill(pad, moved * toSlots * width);
  return to;
}

/**
 * The caches of sequences that decode together, side by side, as the step
 * graph reads a batch: per layer [B, Hkv, C, d] keys and values and a
 * [B, Hkv, C] mask, C the longest head in the batch. It is a working copy kept
 * across steps: a sequence that stays in the batch has only its newest entries
 * copied in each step, and is copied whole only after its cache changed
 * otherwise (eviction, rollback) or it took another slot; a resize lays the
 * rows out anew in place. Sequences keep their own slabs, so joining and
 * leaving the batch changes nothing in them.
 */
export class BatchArena {
  private readonly layers: ArenaLayer[];
  /** Which slot each sequence (known by its layer caches) had in the last batch. */
  private slotOf = new Map<readonly KvLayer[], number>();
  /** A batch is being laid out (gather). */
  busy = false;

  constructor(layerCount: number, shape: KvShape) {
    this.layers = Array.from({ length: layerCount }, () => new ArenaLayer(shape));
  }

  get bytes(): number {
    return this.layers.reduce((sum, layer) => sum + layer.bytes, 0);
  }

  /**
   * Orders a batch so that members keep the slots they had in the last one
   * (only newcomers, and members whose slot is past the batch, are copied whole).
   */
  arrange<T extends { readonly layers: readonly KvLayer[] }>(batch: readonly T[]): T[] {
    const arranged = new Array<T | undefined>(batch.length);
    const newcomers: T[] = [];
    for (const member of batch) {
      const slot = this.slotOf.get(member.layers);
      if (slot !== undefined && slot < batch.length && arranged[slot] === undefined) arranged[slot] = member;
      else newcomers.push(member);
    }
    for (let slot = 0; slot < arranged.length; slot++) arranged[slot] ??= newcomers.shift();
    return arranged as T[];
  }

  /**
   * Lays out an arranged batch (each member one sequence's layer caches) for one step, member b in
   * slot b, yielding between layers and between the stores of a resize so that the event loop may turn
   * (runInSlices): the arena is `busy` till the end, and its members must not change meanwhile (they
   * wait for this step). Returns per layer the past the graph reads (its first B slots).
   */
  *gather(batch: readonly (readonly KvLayer[])[]): Generator<void, ArenaView[]> {
    this.busy = true;
    try {
      this.slotOf = new Map(batch.map((caches, slot) => [caches, slot]));
      const views: ArenaView[] = [];
      for (const [l, layer] of this.layers.entries()) {
        yield* layer.fit(batch.length, Math.max(1, ...batch.map((caches) => caches[l].maxLength)));
        batch.forEach((caches, slot) => layer.sync(slot, hostLayer(caches[l], "decode batches hold host slab caches only")));
        views.push(layer.view());
        yield;
      }
      return views;
    } finally {
      this.busy = false;
    }
  }

  /** Frees the arena's memory (the next batch rebuilds it). */
  clear(): void {
    this.layers.forEach((layer) => layer.release());
    this.slotOf.clear();
  }
}
