import type { Sequence } from "./sequence.js";
import type { Residency } from "./sequence-tiers.js";

export interface SequenceSnapshot {
  sequenceId: string;
  position: number;
  kvBytes: number;
  /** Of kvBytes, the bytes on the device. */
  kvBytesDevice: number;
  entries: number;
  headLengths: number[][];
  /** Per layer, per KV head, the original positions held (only when asked for). */
  headPositions?: number[][][];
  /** Every token of the sequence, by position (only when asked for). */
  tokenIds?: number[];
  lazyLayers: number[];
  idleMs: number;
  decodePolicy: string;
  decodeBudgetTokens: number;
  /** In memory, in the KV store, or both (docs/kv-store.md, "States"). */
  residency: Residency;
  /** Bytes of its snapshot in the KV store (0 when none). */
  storedBytes: number;
}

export interface StatsSnapshot {
  kvBytesUsed: number;
  kvBytesBudget: number;
  kvBytesPooled: number;
  /** The decode batch's working copy of its caches (outside the budget: see BatchArena). */
  batchArenaBytes: number;
  /** Of kvBytesUsed, the bytes on the device (keys and values of a device-resident cache). */
  kvBytesDevice: number;
  /** Where keys and values live: "host", or the device (e.g. "webgpu"). */
  kvLocation: string;
  sequenceCount: number;
  sequences: SequenceSnapshot[];
  /** The caller's tenant: its bytes and sequences, and its quota (0 = none). */
  tenantKvBytes: number;
  tenantSequenceCount: number;
  tenantKvBytesQuota: number;
  tenantSequenceQuota: number;
}

/** What Stats asks for beside the totals: one sequence (default all the caller's), and the costlier details. */
export interface StatsQuery {
  sequenceId?: string;
  includePositions?: boolean;
  includeTokenIds?: boolean;
}

/** A sequence in the KV store only: none of it is in memory. */
export function storedOnlySnapshot(sequenceId: string, storedBytes: number): SequenceSnapshot {
  return { sequenceId, position: 0, kvBytes: 0, kvBytesDevice: 0, entries: 0, headLengths: [], lazyLayers: [], idleMs: 0, decodePolicy: "", decodeBudgetTokens: 0, residency: "stored", storedBytes };
}

/** One sequence as Stats reports it at `now` (resident; the engine adds where else it is). */
export function snapshotOf(sequence: Sequence, now: number, { includePositions = false, includeTokenIds = false }: StatsQuery): Omit<SequenceSnapshot, "residency" | "storedBytes"> {
  return {
    sequenceId: sequence.id,
    position: sequence.position,
    kvBytes: sequence.bytes,
    kvBytesDevice: sequence.deviceBytes,
    entries: sequence.entries,
    headLengths: sequence.layers.map((layer) => Array.from(layer.lengths)),
    headPositions: includePositions ? sequence.layers.map((layer) => layer.headPositions()) : undefined,
    tokenIds: includeTokenIds ? sequence.tokenIds : undefined,
    lazyLayers: sequence.lazyLayers,
    idleMs: sequence.busy ? 0 : now - sequence.lastUsed,
    decodePolicy: sequence.decodeBudget?.policyName ?? "",
    decodeBudgetTokens: sequence.decodeBudget?.tokens ?? 0,
  };
}
