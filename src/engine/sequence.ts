import { DeviceLayerCache } from "../kv/device-layer-cache.js";
import { LayerCache, type KvDtype, type KvShape, type LayerCheckpoint } from "../kv/layer-cache.js";
import { RecentQueryRing, type RingCheckpoint } from "../kv/recent-queries.js";
import type { SlabPool } from "../kv/slab-pool.js";
import type { CacheShape, CacheView } from "../policies/policy.js";
import type { EvictionOutcome, PlannedEviction } from "./eviction-types.js";

/** What a failed call must restore so the sequence is exactly as before it. */
export interface SequenceCheckpoint {
  layers: LayerCheckpoint[];
  recentQueries: RingCheckpoint;
  fedTokens: number;
  evictedAt: number;
  pendingToken: number | null;
  lastToken: number;
  lastLogits: Float32Array | null;
}

/**
 * A standing decode budget as a sequence carries it (DecodeBudget): declared
 * here so that the sequence, which the eviction code works on, does not import it.
 */
export interface StandingBudget {
  readonly policyName: string;
  /** C: the entries per head the budget keeps. */
  readonly tokens: number;
  /** Evicts when some head has grown past C + slack; null when nothing was due. */
  enforce(sequence: Sequence): EvictionOutcome | null;
  /** Works out compacting to C now, whatever the slack; commit it with commitEviction. */
  planCompression(sequence: Sequence): PlannedEviction;
}

/**
 * One caller-named sequence: its cache (one LayerCache per layer) and where
 * generation stands. A token sampled by Decode belongs to the sequence at once
 * but is fed to the model lazily (`pendingToken`), by the next call that needs
 * its keys and values, so a Decode call never runs a step it does not use.
 */
export class Sequence {
  readonly layers: LayerCache[];
  readonly recentQueries: RecentQueryRing;
  /** Tokens whose keys and values have been computed. */
  fedTokens = 0;
  /** The ids of those tokens, by position. */
  readonly fedTokenIds: number[] = [];
  /** Tokens fed when an eviction last dropped entries (0: none did): truncating below it cannot be exact. */
  evictedAt = 0;
  pendingToken: number | null = null;
  /** The most recent token of the sequence (-1 when empty); decoding a piece depends on it. */
  lastToken = -1;
  /** Logits after the last fed token; the next token is chosen from them. */
  lastLogits: Float32Array | null = null;
  lastUsed = Date.now();
  /** The standing budget Decode keeps the sequence within, if one was set. */
  decodeBudget: StandingBudget | null = null;
  /** Layers the latest eviction judged lazy (SimLayerKV). */
  lazyLayers: number[] = [];
  /** Set while a call mutates the sequence; a second one is refused. */
  busy = false;

  constructor(
    readonly id: string,
    /** The tenant that owns the sequence ("" without authentication). */
    readonly tenant: string,
    pool: SlabPool,
    readonly shape: CacheShape,
    recentQueryRows: number,
    kvDtype: KvDtype = "float32",
    /** Makes each layer's cache when keys and values live on a device; host slabs otherwise. */
    deviceLayer?: () => DeviceLayerCache,
  ) {
    const kvShape: KvShape = { kvHeads: shape.kvHeads, headSize: shape.headSize, kvDtype };
    this.layers = Array.from({ length: shape.layers }, () => deviceLayer?.() ?? new LayerCache(pool, kvShape));
    this.recentQueries = new RecentQueryRing(pool, shape, recentQueryRows);
  }

  /** Tokens that belong to the sequence; the next one takes this position. */
  get position(): number {
    return this.fedTokens + (this.pendingToken === null ? 0 : 1);
  }

  /** Every token of the sequence, by position: those fed, then the pending one. */
  get tokenIds(): number[] {
    return this.pendingToken === null ? [...this.fedTokenIds] : [...this.fedTokenIds, this.pendingToken];
  }

  /** Records tokens whose keys and values a step has just appended. */
  recordFed(tokens: readonly number[]): void {
    for (const token of tokens) this.fedTokenIds.push(token);
    this.fedTokens += tokens.length;
  }

  get bytes(): number {
    return this.layers.reduce((sum, layer) => sum + layer.bytes, this.recentQueries.bytes);
  }

  /** Of `bytes`, those on the device. */
  get deviceBytes(): number {
    return this.layers.reduce((sum, layer) => sum + (layer instanceof DeviceLayerCache ? layer.deviceBytes : 0), 0);
  }

  /** Reads device-resident keys back for the policies that score them (before an eviction); nothing for host slabs. */
  async loadKeys(): Promise<void> {
    for (const layer of this.layers) if (layer instanceof DeviceLayerCache) await layer.loadKeys();
  }

  get entries(): number {
    return this.layers.reduce((sum, layer) => sum + layer.entries, 0);
  }

  /** The longest head over all layers. */
  get maxHeadLength(): number {
    return this.layers.reduce((max, layer) => Math.max(max, layer.maxLength), 0);
  }

  /** Bytes the sequence would hold after making room for `extra` entries per head. */
  bytesWithRoomFor(extra: number): number {
    return this.layers.reduce((sum, layer) => sum + layer.bytesWithRoomFor(extra), this.recentQueries.fullBytes);
  }

  /**
   * Takes room for `extra` more entries per head (all before any await: a concurrent admission
   * must see these bytes as held); returns how to give the layers' room back.
   */
  reserveRoom(extra: number): () => void {
    const rooms = this.layers.map((layer) => layer.room());
    const giveBack = () => this.layers.forEach((layer, l) => layer.restoreRoom(rooms[l]));
    try {
      for (const layer of this.layers) layer.reserve(extra);
      this.recentQueries.reserve();
    } catch (error) {
      giveBack();
      throw error;
    }
    return giveBack;
  }

  /** Between requests: ragged layers give back the room their shorter heads do not need. */
  settle(): void {
    for (const layer of this.layers) layer.settle();
  }

  /** The cache as eviction policies read it. */
  view(): CacheView {
    return { shape: this.shape, layers: this.layers, recentQueries: this.recentQueries.view(), position: this.fedTokens };
  }

  checkpoint(): SequenceCheckpoint {
    return {
      layers: this.layers.map((layer) => layer.checkpoint()),
      recentQueries: this.recentQueries.checkpoint(),
      fedTokens: this.fedTokens,
      evictedAt: this.evictedAt,
      pendingToken: this.pendingToken,
      lastToken: this.lastToken,
      lastLogits: this.lastLogits,
    };
  }

  rollback(checkpoint: SequenceCheckpoint): void {
    this.layers.forEach((layer, l) => layer.rollback(checkpoint.layers[l]));
    this.recentQueries.rollback(checkpoint.recentQueries);
    this.fedTokens = checkpoint.fedTokens;
    this.fedTokenIds.length = checkpoint.fedTokens;
    this.evictedAt = checkpoint.evictedAt;
    this.pendingToken = checkpoint.pendingToken;
    this.lastToken = checkpoint.lastToken;
    this.lastLogits = checkpoint.lastLogits;
  }

  /** Becomes a copy of `source` (a new, empty sequence of the same shape): cache, recent queries and where generation stands. */
  copyFrom(source: Sequence): void {
    try {
      this.layers.forEach((layer, l) => layer.copyFrom(source.layers[l]));
      this.recentQueries.copyFrom(source.recentQueries);
    } catch (error) {
      this.release(); // the budget ran out part-way: nothing stays held
      throw error;
    }
    this.fedTokens = source.fedTokens;
    for (const token of source.fedTokenIds) this.fedTokenIds.push(token);
    this.evictedAt = source.evictedAt;
    this.pendingToken = source.pendingToken;
    this.lastToken = source.lastToken;
    this.lastLogits = source.lastLogits;
    this.decodeBudget = source.decodeBudget; // immutable: shared
    this.lazyLayers = [...source.lazyLayers];
  }

  release(): number {
    const bytes = this.bytes;
    for (const layer of this.layers) layer.release();
    this.recentQueries.release();
    return bytes;
  }
}
