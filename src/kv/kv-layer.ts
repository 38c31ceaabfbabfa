import type { KvArray, KvDtype, LayerCheckpoint } from "./layer-cache.js";

/**
 * One layer of one sequence's cache as the engine drives it, wherever its keys and values live:
 * a host slab (LayerCache) or device buffers (DeviceLayerCache). Both keep the same per-entry
 * index on the host (lengths, mask, accumulated attention, positions) in the same slot layout:
 * each KV head owns a run of slots starting at `offsets[h]`, entries in ascending position order.
 */
export interface KvLayer {
  readonly kvDtype: KvDtype;
  /** Entries per KV head. */
  readonly lengths: Int32Array;
  /** Slot where each head's run starts. */
  readonly offsets: Int32Array;
  /** The largest head's room: every head's after `reserve`. */
  readonly capacity: number;
  /** Additive attention mask over the slots: 0 for live entries, -inf for free slots. */
  readonly mask: Float32Array;
  /** Accumulated attention each entry received (H2O's heavy-hitter score). */
  readonly mass: Float32Array;
  /** Original token position of each entry. */
  readonly positions: Int32Array;
  /** Counts changes other than appends (eviction, rollback, release). */
  readonly revision: number;
  /** Whether `keys` can be read here now (a device layer reads them back first). */
  readonly keysOnHost: boolean;
  /** Post-RoPE keys [slots, d] as float32, for the policies that score them. */
  readonly keys: Float32Array;
  /** Bytes held, host and device. */
  readonly bytes: number;
  readonly entries: number;
  /** Bytes the held entries themselves take (key, value, mask, attention mass, position), without the room around them. */
  readonly entryBytes: number;
  readonly maxLength: number;
  /** Original positions held by each head. */
  headPositions(): number[][];
  /** Bytes this layer would hold with room for `extra` more entries per head. */
  bytesWithRoomFor(extra: number): number;
  /** Bytes this layer would hold after keeping `lengths` entries per head. */
  bytesHolding(lengths: ArrayLike<number>): number;
  /** Makes room for `extra` more entries on every head, as a step needs. */
  reserve(extra: number): void;
  /** Between requests, gives back room the heads' entries do not need. */
  settle(): void;
  /** Takes a step's `count` new rows per head (LayerCache.append documents the layout). */
  append(keys: KvArray, values: KvArray, offset: number, count: number, firstPosition: number, colsum?: Float32Array, colsumOffset?: number, colsumPastSlots?: number): void;
  /** Keeps, per head, only the entries at the given slots (ascending). */
  retain(keep: readonly Int32Array[]): void;
  checkpoint(): LayerCheckpoint;
  /** Undoes every append since `checkpoint`. */
  rollback(checkpoint: LayerCheckpoint): void;
  /** Each head's room, to give back with `restoreRoom`. */
  room(): Int32Array;
  restoreRoom(headCapacities: Int32Array): void;
  /** Becomes a copy of `source` (an empty layer of the same kind and shape). */
  copyFrom(source: KvLayer): void;
  release(): void;
}
