import type { EvictionSpec } from "../../policies/policy.js";
import type { KvLayer } from "../kv-layer.js";
import { floatsPerEntry, type KvDtype } from "../layer-cache.js";
import type { RecentQueryRing, RingCheckpoint } from "../recent-queries.js";
import { packLayer, unpackLayer, type LayerEntries } from "./layer-entries.js";
import { SnapshotMismatch } from "./store-errors.js";

/** The shape a snapshot was taken with; it restores only into a sequence of the same shape. */
export interface SnapshotShape {
  layers: number;
  heads: number;
  kvHeads: number;
  headSize: number;
  kvDtype: KvDtype;
  recentQueryRows: number;
}

/** A standing decode budget as stored: its fixed spec (max_tokens = C) and slack. */
export interface StoredDecodeBudget {
  spec: EvictionSpec;
  tokens: number;
}

/**
 * Everything one sequence needs to continue exactly as if it had never left memory
 * (docs/kv-store.md, "What a snapshot holds"): per layer and KV head the kept keys, values,
 * original positions and attention mass; the recent-query ring; the token ids fed; the pending
 * token; the last logits; the standing decode budget; the lazy layers.
 */
export interface KvSnapshot {
  shape: SnapshotShape;
  fedTokenIds: Int32Array;
  evictedAt: number;
  pendingToken: number | null;
  lastToken: number;
  lastLogits: Float32Array | null;
  decodeBudget: StoredDecodeBudget | null;
  lazyLayers: number[];
  layers: LayerEntries[];
  recentQueries: RingCheckpoint;
}

/** The standing budget as a sequence holds it: what a snapshot reads and writes back. */
export interface SnapshotBudget {
  readonly spec: EvictionSpec;
  readonly slack: number;
  readonly tokens: number;
}

/**
 * What capture and restore read and write: the public surface of a Sequence (src/engine/sequence.ts),
 * declared here so the store does not import the engine.
 */
export interface SnapshotSubject<Budget extends SnapshotBudget = SnapshotBudget> {
  readonly shape: { layers: number; heads: number; kvHeads: number; headSize: number };
  readonly layers: KvLayer[];
  readonly recentQueries: RecentQueryRing;
  readonly fedTokens: number;
  readonly fedTokenIds: readonly number[];
  readonly evictedAt: number;
  readonly pendingToken: number | null;
  readonly lastToken: number;
  readonly lastLogits: Float32Array | null;
  readonly decodeBudget: Budget | null;
  readonly lazyLayers: readonly number[];
  /** Takes up where generation stood (the sequence's own state change; its caches are filled already). */
  resume(state: GenerationState<Budget>): void;
  release(): number;
}

/** Where generation stands, apart from the caches: what a restored sequence resumes from. */
export interface GenerationState<Budget> {
  fedTokenIds: readonly number[];
  evictedAt: number;
  pendingToken: number | null;
  lastToken: number;
  lastLogits: Float32Array | null;
  decodeBudget: Budget | null;
  lazyLayers: readonly number[];
}

function shapeOf(sequence: SnapshotSubject): SnapshotShape {
  const { layers, heads, kvHeads, headSize } = sequence.shape;
  return { layers, heads, kvHeads, headSize, kvDtype: sequence.layers[0]?.kvDtype ?? "float32", recentQueryRows: sequence.recentQueries.rows };
}

/** Copies the state of `sequence` out; the sequence is not changed. Call it between requests (not while busy). */
export function captureSnapshot(sequence: SnapshotSubject): KvSnapshot {
  const budget = sequence.decodeBudget;
  return {
    shape: shapeOf(sequence),
    fedTokenIds: Int32Array.from(sequence.fedTokenIds),
    evictedAt: sequence.evictedAt,
    pendingToken: sequence.pendingToken,
    lastToken: sequence.lastToken,
    lastLogits: sequence.lastLogits && Float32Array.from(sequence.lastLogits),
    // The slack goes into the spec, so the restored budget does not depend on the policy's default then.
    decodeBudget: budget && { spec: { ...budget.spec, decodeSlack: budget.slack }, tokens: budget.tokens },
    lazyLayers: [...sequence.lazyLayers],
    layers: sequence.layers.map(packLayer),
    recentQueries: sequence.recentQueries.checkpoint(),
  };
}

/**
 * Makes `target`, an empty sequence (just created, nothing fed), the sequence `snapshot` was taken of.
 * `standingBudget` rebuilds a decode budget from its stored spec (the engine's DecodeBudget.create).
 * If memory runs out part-way the target is released and the error thrown: nothing stays held.
 */
export function restoreSnapshot<Budget extends SnapshotBudget>(
  snapshot: KvSnapshot,
  target: SnapshotSubject<Budget>,
  standingBudget: (stored: StoredDecodeBudget) => Budget,
): void {
  const expected = shapeOf(target);
  for (const [field, value] of Object.entries(expected) as [keyof SnapshotShape, number | string][]) {
    // A sequence keeps the query rows of the policy named for it (docs/policies.md): up to what this server keeps.
    if (field === "recentQueryRows" ? snapshot.shape.recentQueryRows > (value as number) : snapshot.shape[field] !== value) {
      throw new SnapshotMismatch(`snapshot has ${field} ${snapshot.shape[field]}, this server's sequences have ${value}`);
    }
  }
  if (target.fedTokens !== 0 || target.pendingToken !== null) throw new Error("restoreSnapshot needs a new, empty sequence");
  const budget = snapshot.decodeBudget && standingBudget(snapshot.decodeBudget);
  if (budget && budget.tokens !== snapshot.decodeBudget!.tokens) {
    throw new SnapshotMismatch(`restored decode budget keeps ${budget.tokens} entries per head, the snapshot's kept ${snapshot.decodeBudget!.tokens}`);
  }
  try {
    target.layers.forEach((layer, l) => unpackLayer(layer, snapshot.layers[l]));
    target.recentQueries.rollback(snapshot.recentQueries);
  } catch (error) {
    target.release(); // the budget ran out part-way
    throw error;
  }
  target.resume({
    fedTokenIds: Array.from(snapshot.fedTokenIds),
    evictedAt: snapshot.evictedAt,
    pendingToken: snapshot.pendingToken,
    lastToken: snapshot.lastToken,
    lastLogits: snapshot.lastLogits && Float32Array.from(snapshot.lastLogits), // the sequence keeps it, and a loaded snapshot lends its arrays (SnapshotStore.load)
    decodeBudget: budget,
    lazyLayers: snapshot.lazyLayers,
  });
}

/**
 * The KV memory a restore of `snapshot` takes, exactly: each layer's slab (every head's room, at the
 * cache's words per entry: keys, values, mask, mass, position) and the query ring's. Admission asks this
 * much of the memory manager before restoring; asking less once let a restore run out mid-way while
 * relief could have made room (docs/kv-store.md, "Capacity under one budget").
 */
export function restoredBytes(snapshot: KvSnapshot): number {
  const slots = snapshot.layers.reduce((sum, layer) => sum + layer.headCapacities.reduce((a, b) => a + b, 0), 0);
  return slots * floatsPerEntry(snapshot.shape) * Float32Array.BYTES_PER_ELEMENT + snapshot.recentQueries.slab.byteLength;
}
