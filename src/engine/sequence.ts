import { DeviceLayerCache } from "../kv/device-layer-cache.js";
import type { KvLayer } from "../kv/kv-layer.js";
import { LayerCache, type KvDtype, type KvShape, type LayerCheckpoint } from "../kv/layer-cache.js";
import { RecentQueryRing, type RingCheckpoint } from "../kv/recent-queries.js";
import type { SlabPool } from "../kv/slab-pool.js";
import type { StepOutput } from "../model/runners/model-runner.js";
import type { CacheShape, CacheView, EvictionSpec } from "../policies/policy.js";
import { EngineError } from "./engine-error.js";
import type { GenerationState } from "../kv/store/sequence-snapshot.js";
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
  /** The request that set it, with C fixed (what a stored snapshot keeps to rebuild it). */
  readonly spec: EvictionSpec;
  /** Entries a head may grow past C before the policy runs again. */
  readonly slack: number;
  /** Whether the policy scores keys, which a device-resident cache must read back before it runs. */
  readonly readsKeys: boolean;
  /** Whether some head has grown past C + slack. */
  isDue(sequence: Sequence): boolean;
  /** Evicts when it is due (on a sequence the caller holds: the plan is sliced); null when nothing was due. */
  enforce(sequence: Sequence): Promise<EvictionOutcome | null>;
  /** Works out compacting to C now, whatever the slack, layer by layer; commit it with commitEviction. */
  planCompression(sequence: Sequence): Generator<void, PlannedEviction>;
}

/**
 * One caller-named sequence: its cache (one KvLayer per layer: host slabs, or device-resident) and where
 * generation stands. A token sampled by Decode belongs to the sequence at once
 * but is fed to the model lazily (`pendingToken`), by the next call that needs
 * its keys and values, so a Decode call never runs a step it does not use.
 * Where generation stands changes only through the sequence's own methods.
 */
export class Sequence {
  readonly layers: KvLayer[];
  readonly recentQueries: RecentQueryRing;
  /** The ids of the fed tokens, by position. */
  private readonly fed: number[] = [];
  private evictedAtTokens = 0;
  private pending: number | null = null;
  private last = -1;
  private logits: Float32Array | null = null;
  private usedAt = Date.now();
  private claimed = false;
  private lazy: number[] = [];
  private budget: StandingBudget | null = null;

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
    this.recentQueries = new RecentQueryRing(pool, shape, recentQueryRows, kvDtype);
  }

  /** Tokens whose keys and values have been computed. */
  get fedTokens(): number {
    return this.fed.length;
  }

  /** The ids of those tokens, by position. */
  get fedTokenIds(): readonly number[] {
    return this.fed;
  }

  /** Tokens fed when an eviction last dropped entries (0: none did): truncating below it cannot be exact. */
  get evictedAt(): number {
    return this.evictedAtTokens;
  }

  /** A sampled token not yet fed to the model. */
  get pendingToken(): number | null {
    return this.pending;
  }

  /** The most recent token of the sequence (-1 when empty); decoding a piece depends on it. */
  get lastToken(): number {
    return this.last;
  }

  /** Logits after the last fed token; the next token is chosen from them. */
  get lastLogits(): Float32Array | null {
    return this.logits;
  }

  /** When a call last touched the sequence (Date.now()). */
  get lastUsed(): number {
    return this.usedAt;
  }

  /** Set while a call mutates the sequence; a second one is refused. */
  get busy(): boolean {
    return this.claimed;
  }

  /** Layers the latest eviction judged lazy (SimLayerKV). */
  get lazyLayers(): number[] {
    return this.lazy;
  }

  /** The standing budget Decode keeps the sequence within, if one was set. */
  get decodeBudget(): StandingBudget | null {
    return this.budget;
  }

  /** Sets (or, with null, removes) the standing decode budget. */
  keepWithin(budget: StandingBudget | null): void {
    this.budget = budget;
  }

  /** Keeps the queries of the last `rows` tokens from now on: what the policy last named for the sequence reads (docs/policies.md). */
  keepQueryRows(rows: number): void {
    this.recentQueries.resize(rows);
  }

  /** Holds the sequence for a call; refuses (ABORTED) while another holds it, unless `fresh` (just created, so no one else can). */
  claim(fresh = false): void {
    if (this.claimed && !fresh) throw new EngineError("ABORTED", `sequence '${this.id}' is busy with another call`);
    this.claimed = true;
  }

  /** Ends the call's hold; the sequence counts as used now, unless the hold was no client's use (`used` false: a write-back to the store). */
  unclaim(used = true): void {
    this.claimed = false;
    if (used) this.usedAt = Date.now();
  }

  /** Tokens that belong to the sequence; the next one takes this position. */
  get position(): number {
    return this.fedTokens + (this.pendingToken === null ? 0 : 1);
  }

  /** Every token of the sequence, by position: those fed, then the pending one. */
  get tokenIds(): number[] {
    return this.pending === null ? [...this.fed] : [...this.fed, this.pending];
  }

  /**
   * Stores what a step computed for `chunk` as member `member` of the step's batch: from the
   * step's [L, B, Hkv, S, d] keys and values this member's rows, its attention mass and recent
   * queries, and the logits after its last token. The pending token, if fed, is no longer pending.
   */
  absorbStep(out: StepOutput, chunk: readonly number[], member: number, queryRows: number, vocabSize: number): void {
    const { kvHeads, headSize } = this.shape;
    const count = chunk.length;
    const batch = out.batchSize;
    const rows = Math.round(out.logits.length / (batch * vocabSize)); // logit rows per sequence
    this.layers.forEach((layer, l) => {
      const past = out.pastSlots[l];
      const keysAt = (l * batch + member) * kvHeads * count * headSize;
      const colsumAt = member * kvHeads * (past + count);
      layer.append(out.newKeys, out.newValues, keysAt, count, this.fedTokens, out.attentionColsums[l], colsumAt, past);
    });
    this.recentQueries.push(out.queries, queryRows, this.fedTokens + count - queryRows, batch, member);
    for (const token of chunk) this.fed.push(token);
    this.logits = out.logits.slice(((member + 1) * rows - 1) * vocabSize, (member + 1) * rows * vocabSize);
    this.pending = null;
    this.last = chunk[count - 1];
  }

  /** Takes a token Decode sampled: it belongs to the sequence now, and is fed by the next step. */
  acceptSampled(tokenId: number): void {
    this.pending = tokenId;
    this.last = tokenId;
    this.usedAt = Date.now();
  }

  /** An eviction has dropped entries now; `lazyLayers` are those it judged lazy. */
  recordEviction(lazyLayers: number[]): void {
    this.lazy = lazyLayers;
    this.evictedAtTokens = this.fedTokens;
  }

  /** Drops the pending token only: the logits that chose it stay valid. */
  dropPendingToken(): void {
    const ids = this.tokenIds;
    this.pending = null;
    this.last = ids[this.fedTokens - 1] ?? -1;
  }

  /**
   * Keeps the first `length` tokens: the first `length - 1` stay fed (no logits after token
   * `length - 1` are kept, so it becomes pending and is fed again by the next step). The caller
   * checked that no eviction dropped entries below that.
   */
  cutTo(length: number): void {
    const ids = this.tokenIds;
    const keep = Math.max(0, length - 1);
    for (const layer of this.layers) {
      if (keep === 0) layer.release();
      else layer.retain(layer.headPositions().map((positions) => Int32Array.from(positions.keys()).filter((slot) => positions[slot] < keep)));
    }
    this.recentQueries.dropFrom(keep);
    this.fed.length = keep;
    this.pending = length > 0 ? ids[length - 1] : null;
    this.last = length > 0 ? ids[length - 1] : -1;
    this.logits = null;
  }

  get bytes(): number {
    return this.layers.reduce((sum, layer) => sum + layer.bytes, this.recentQueries.bytes);
  }

  /** Of `bytes`, those on the device. */
  get deviceBytes(): number {
    return this.layers.reduce((sum, layer) => sum + (layer instanceof DeviceLayerCache ? layer.deviceBytes : 0), 0);
  }

  /** Whether every layer's keys can be read on the host (always, unless device-resident and not read back). */
  get keysOnHost(): boolean {
    return this.layers.every((layer) => layer.keysOnHost);
  }

  /** Reads device-resident keys back for the policies that score them (before an eviction); nothing for host slabs. */
  async loadKeys(): Promise<void> {
    for (const layer of this.layers) if (layer instanceof DeviceLayerCache) await layer.loadKeys();
  }

  /** Reads device-resident keys and values back, before a snapshot (captureSnapshot); nothing for host slabs. */
  async loadEntries(): Promise<void> {
    for (const layer of this.layers) if (layer instanceof DeviceLayerCache) await layer.loadEntries();
  }

  /** Drops what loadKeys and loadEntries read back: a host copy outside the budget, not kept once a snapshot is taken. */
  dropReadBack(): void {
    for (const layer of this.layers) if (layer instanceof DeviceLayerCache) layer.dropReadBack();
  }

  /** Whether keys and values live on the device (WebGPU): reading them back for a snapshot is asynchronous. */
  get onDevice(): boolean {
    return this.layers.some((layer) => layer instanceof DeviceLayerCache);
  }

  get entries(): number {
    return this.layers.reduce((sum, layer) => sum + layer.entries, 0);
  }

  /** Bytes the entries themselves take; `bytes` also counts the room around them and the recent-query ring. */
  get entryBytes(): number {
    return this.layers.reduce((sum, layer) => sum + layer.entryBytes, 0);
  }

  /** The longest head over all layers. */
  get maxHeadLength(): number {
    return this.layers.reduce((max, layer) => Math.max(max, layer.maxLength), 0);
  }

  /** The most slots a layer holds room for: what a step of the sequence alone attends, masked slots included. */
  get maxCapacity(): number {
    return this.layers.reduce((max, layer) => Math.max(max, layer.capacity), 0);
  }

  /** Bytes the sequence would hold after making room for `extra` entries per head, its ring keeping `queryRows` rows. */
  bytesWithRoomFor(extra: number, queryRows = this.recentQueries.rows): number {
    return this.layers.reduce((sum, layer) => sum + layer.bytesWithRoomFor(extra), this.recentQueries.bytesFor(queryRows));
  }

  /**
   * Takes room for `extra` more entries per head, and the ring's for `queryRows` rows (all before any
   * await: a concurrent admission must see these bytes as held); returns how to give the room back,
   * the ring's rows included (nothing was pushed meanwhile: a failed step rolls back instead).
   */
  reserveRoom(extra: number, queryRows = this.recentQueries.rows): () => void {
    const rooms = this.layers.map((layer) => layer.room());
    const rows = this.recentQueries.rows;
    const giveBack = () => {
      this.layers.forEach((layer, l) => layer.restoreRoom(rooms[l]));
      this.recentQueries.resize(rows);
    };
    try {
      this.recentQueries.resize(queryRows);
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
      evictedAt: this.evictedAtTokens,
      pendingToken: this.pending,
      lastToken: this.last,
      lastLogits: this.logits,
    };
  }

  rollback(checkpoint: SequenceCheckpoint): void {
    this.layers.forEach((layer, l) => layer.rollback(checkpoint.layers[l]));
    this.recentQueries.rollback(checkpoint.recentQueries);
    this.fed.length = checkpoint.fedTokens;
    this.evictedAtTokens = checkpoint.evictedAt;
    this.pending = checkpoint.pendingToken;
    this.last = checkpoint.lastToken;
    this.logits = checkpoint.lastLogits;
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
    for (const token of source.fed) this.fed.push(token);
    this.evictedAtTokens = source.evictedAtTokens;
    this.pending = source.pending;
    this.last = source.last;
    this.logits = source.logits;
    this.budget = source.budget; // immutable: shared
    this.lazy = [...source.lazy];
  }

  /** Takes up where a stored snapshot's generation stood; its caches were filled already (src/kv/store/sequence-snapshot.ts). */
  resume(state: GenerationState<StandingBudget>): void {
    if (this.fed.length !== 0 || this.pending !== null) throw new Error("only a new, empty sequence can resume a snapshot");
    for (const token of state.fedTokenIds) this.fed.push(token);
    this.evictedAtTokens = state.evictedAt;
    this.pending = state.pendingToken;
    this.last = state.lastToken;
    this.logits = state.lastLogits;
    this.budget = state.decodeBudget;
    this.lazy = [...state.lazyLayers];
  }

  release(): number {
    const bytes = this.bytes;
    for (const layer of this.layers) layer.release();
    this.recentQueries.release();
    return bytes;
  }
}
