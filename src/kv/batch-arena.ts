import { hostLayer } from "./host-layer.js";
import type { KvLayer } from "./kv-layer.js";
import { capacityFor, type KvArray, type KvShape, type LayerCache } from "./layer-cache.js";

/** Whose entries one batch slot of one layer holds, as of which of its revisions. */
interface SlotCopy {
  cache: LayerCache;
  revision: number;
}

/** The first B slots of a layer as the step graph reads them; stable objects while the layer keeps its size. */
interface SlotsView {
  keyStore: KvArray;
  valueStore: KvArray;
  mask: Float32Array;
  lengths: Int32Array;
}

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
   * ends while `revision` stays, so a session thread can keep the arena and be sent only those
   * (docs/worker-threads.md), as it keeps a lone sequence's cache.
   */
  lengths = new Int32Array();
  /** Counts changes other than appends: a slot copied afresh, a resize. */
  revision = 0;
  /** Per batch size, the views of the first B slots: the same objects from step to step, so a thread's copy of them is found again. */
  private views = new Map<number, SlotsView>();

  constructor(private readonly shape: KvShape) {
    this.keyStore = this.kvArray(0);
    this.valueStore = this.kvArray(0);
  }

  get bytes(): number {
    return this.keyStore.byteLength + this.valueStore.byteLength + this.mask.byteLength;
  }

  /** Sizes the layer for `slots` sequences of up to `needed` entries per head; a new size drops every copy. */
  fit(slots: number, needed: number): void {
    // Grow with headroom, and shrink once the batch needs under half: every resize recopies the batch.
    const capacity = needed > this.capacity ? capacityFor(this.capacity, needed) : 2 * needed < this.capacity ? capacityFor(0, needed) : this.capacity;
    if (capacity === this.capacity && slots <= this.slots) return;
    this.capacity = capacity;
    this.slots = Math.max(slots, this.slots);
    const { kvHeads, headSize } = this.shape;
    this.keyStore = this.kvArray(this.slots * kvHeads * capacity * headSize);
    this.valueStore = this.kvArray(this.slots * kvHeads * capacity * headSize);
    this.mask = new Float32Array(this.slots * kvHeads * capacity);
    this.copies = new Array<SlotCopy | null>(this.slots).fill(null);
    this.lengths = new Int32Array(this.slots * kvHeads);
    this.views.clear();
    this.revision++;
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
      this.revision++;
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

  /** The first `batch` slots as the step graph reads them, with what a session thread needs to keep them (PastLayer). */
  view(batch: number): SlotsView & { capacity: number; revision: number } {
    const { kvHeads, headSize } = this.shape;
    let view = this.views.get(batch);
    if (!view) {
      const entries = batch * kvHeads * this.capacity;
      view = {
        keyStore: this.keyStore.subarray(0, entries * headSize),
        valueStore: this.valueStore.subarray(0, entries * headSize),
        mask: this.mask.subarray(0, entries),
        lengths: this.lengths.subarray(0, batch * kvHeads),
      };
      this.views.set(batch, view);
    }
    return { ...view, capacity: this.capacity, revision: this.revision };
  }

  release(): void {
    this.capacity = 0;
    this.slots = 0;
    this.keyStore = this.kvArray(0);
    this.valueStore = this.kvArray(0);
    this.mask = new Float32Array();
    this.copies = [];
    this.lengths = new Int32Array();
    this.views.clear();
    this.revision++;
  }

  private kvArray(length: number): KvArray {
    return this.shape.kvDtype === "float16" ? new Uint16Array(length) : new Float32Array(length);
  }
}

/**
 * The caches of sequences that decode together, side by side, as the step
 * graph reads a batch: per layer [B, Hkv, C, d] keys and values and a
 * [B, Hkv, C] mask, C the longest head in the batch. It is a working copy kept
 * across steps: a sequence that stays in the batch has only its newest entries
 * copied in each step, and is copied whole only after its cache changed
 * otherwise (eviction, rollback) or the arena was resized. Sequences keep
 * their own slabs, so joining and leaving the batch changes nothing in them.
 */
export class BatchArena {
  private readonly layers: ArenaLayer[];
  /** Which slot each sequence (known by its layer caches) had in the last batch. */
  private slotOf = new Map<readonly KvLayer[], number>();

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
   * Lays out an arranged batch (each member one sequence's layer caches) for
   * one step, member b in slot b. Returns per layer the past the graph reads.
   */
  gather(batch: readonly (readonly KvLayer[])[]): ReturnType<ArenaLayer["view"]>[] {
    this.slotOf = new Map(batch.map((caches, slot) => [caches, slot]));
    return this.layers.map((layer, l) => {
      layer.fit(batch.length, Math.max(1, ...batch.map((caches) => caches[l].maxLength)));
      batch.forEach((caches, slot) => layer.sync(slot, hostLayer(caches[l], "decode batches hold host slab caches only")));
      return layer.view(batch.length);
    });
  }

  /** Frees the arena's memory (the next batch rebuilds it). */
  clear(): void {
    this.layers.forEach((layer) => layer.release());
    this.slotOf.clear();
  }
}
