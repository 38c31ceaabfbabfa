import type { EvictionOutcome, SequenceSnapshot } from "../engine/engine.js";
import type { TokenLogprob as Score } from "../model/sampling/logprobs.js";
import { Residency, type EvictionResult, type SequenceStats, type TokenLogprob } from "../gen/kvwarden/v1/kvwarden.js";

/* What the engine answers, as KvCache messages (requests are read in kv-cache-requests.ts). */

/** A scored token as the API returns it. */
export function tokenLogprobOf(score: Score): TokenLogprob {
  return { tokenId: score.tokenId, logprob: score.logprob, top: score.top, distribution: score.distribution ? Array.from(score.distribution) : [] };
}

export function evictionResultOf(outcome: EvictionOutcome): EvictionResult {
  return {
    ...outcome,
    entriesBefore: BigInt(outcome.entriesBefore),
    entriesAfter: BigInt(outcome.entriesAfter),
    bytesBefore: BigInt(outcome.bytesBefore),
    bytesAfter: BigInt(outcome.bytesAfter),
    entryBytesBefore: BigInt(outcome.entryBytesBefore),
    entryBytesAfter: BigInt(outcome.entryBytesAfter),
    kept: outcome.kept.map((headLengths) => ({ headLengths, headPositions: [] })),
  };
}

export function sequenceStatsOf(snapshot: SequenceSnapshot): SequenceStats {
  return {
    sequenceId: snapshot.sequenceId,
    position: snapshot.position,
    kvBytes: BigInt(snapshot.kvBytes),
    kvBytesDevice: BigInt(snapshot.kvBytesDevice),
    entries: BigInt(snapshot.entries),
    layers: snapshot.headLengths.map((headLengths, l) => ({
      headLengths,
      headPositions: snapshot.headPositions?.[l].map((positions) => ({ positions })) ?? [],
    })),
    idleMs: BigInt(snapshot.idleMs),
    lazyLayers: snapshot.lazyLayers,
    decodePolicy: snapshot.decodePolicy,
    decodeBudgetTokens: snapshot.decodeBudgetTokens,
    tokenIds: snapshot.tokenIds ?? [],
    residency: RESIDENCIES[snapshot.residency],
    storedBytes: BigInt(snapshot.storedBytes),
  };
}

const RESIDENCIES = { resident: Residency.RESIDENCY_RESIDENT, stored: Residency.RESIDENCY_STORED, both: Residency.RESIDENCY_BOTH };
