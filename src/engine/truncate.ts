import { EngineError } from "./engine-error.js";
import type { Sequence } from "./sequence.js";

export interface TruncateOutcome {
  position: number;
  droppedTokens: number;
  kvBytes: number;
}

/**
 * Rolls `sequence` back to its first `length` tokens, as if the later ones had
 * never been fed (see TruncateRequest in the proto for the contract). Checks
 * everything before changing anything.
 */
export function truncate(sequence: Sequence, length: number): TruncateOutcome {
  const { position, fedTokens } = sequence;
  if (length > position) {
    throw new EngineError("OUT_OF_RANGE", `length ${length} is past sequence '${sequence.id}', which holds ${position} tokens`);
  }
  if (length === position) return { position, droppedTokens: 0, kvBytes: sequence.bytes };
  if (length === fedTokens) {
    // Only the pending token goes: the logits that chose it stay valid.
    sequence.dropPendingToken();
    return { position: length, droppedTokens: 1, kvBytes: sequence.bytes };
  }
  // No logits after token length - 1 are kept: it leaves the cache and is fed again by the next step.
  const keep = Math.max(0, length - 1);
  if (sequence.evictedAt > keep) {
    throw new EngineError(
      "FAILED_PRECONDITION",
      `an eviction ran on sequence '${sequence.id}' when it held ${sequence.evictedAt} tokens: the entries it dropped below position ${keep} cannot be restored, so truncating to ${length} cannot be exact`,
    );
  }
  if (sequence.decodeBudget) {
    throw new EngineError(
      "FAILED_PRECONDITION",
      `sequence '${sequence.id}' has a standing decode budget (${sequence.decodeBudget.policyName}) whose evictions would score attention that the ${fedTokens - keep} dropped fed tokens paid to the kept entries; truncating to ${length} cannot be exact`,
    );
  }
  sequence.cutTo(length);
  return { position: sequence.position, droppedTokens: position - length, kvBytes: sequence.bytes };
}
