import type { Compression } from "../kv/compress-idle.js";
import { InvalidEvictionError } from "../policies/policy.js";
import type { EngineTelemetry } from "../telemetry/engine-telemetry.js";
import { commitEviction } from "./apply-eviction.js";
import type { Sequence } from "./sequence.js";

/**
 * How memory pressure may compress `sequence` (docs/architecture.md): to its standing decode
 * budget, whatever the slack; null when it carries none (nothing is evicted from a sequence that
 * did not ask for eviction) or when its budget cannot run now.
 */
export function compressionOf(sequence: Sequence, telemetry: EngineTelemetry): Compression | null {
  // Keys still on the device cannot be read back here (this runs synchronously, under pressure): such a budget is passed over.
  if (!sequence.decodeBudget || (sequence.decodeBudget.readsKeys && !sequence.keysOnHost)) return null;
  try {
    const plan = sequence.decodeBudget.planCompression(sequence);
    return {
      bytesAfter: plan.bytesAfter,
      commit: (requesterTenant) => {
        const outcome = commitEviction(sequence, plan);
        if (sequence.tenant !== requesterTenant) telemetry.crossTenantCompression(sequence.tenant, requesterTenant, outcome);
      },
    };
  } catch (error) {
    // A budget that cannot run now (its proxy queries have left the ring) is passed over.
    if (error instanceof InvalidEvictionError) return null;
    throw error;
  }
}
