import { KeysOnDevice } from "../kv/keys-on-device.js";
import type { Compression } from "../kv/compress-idle.js";
import { InvalidEvictionError } from "../policies/policy.js";
import { observeCrossTenantCompression } from "../telemetry/engine-telemetry.js";
import { commitEviction } from "./apply-eviction.js";
import type { Sequence } from "./sequence.js";

/**
 * How memory pressure may compress `sequence` (docs/architecture.md): to its standing decode
 * budget, whatever the slack; null when it carries none (nothing is evicted from a sequence that
 * did not ask for eviction) or when its budget cannot run now.
 */
export function compressionOf(sequence: Sequence): Compression | null {
  if (!sequence.decodeBudget) return null;
  try {
    const plan = sequence.decodeBudget.planCompression(sequence);
    return {
      bytesAfter: plan.bytesAfter,
      commit: (requesterTenant) => {
        const outcome = commitEviction(sequence, plan);
        if (sequence.tenant !== requesterTenant) observeCrossTenantCompression(sequence.tenant, requesterTenant, outcome);
      },
    };
  } catch (error) {
    // A budget that cannot run now (its proxy queries have left the ring, or it scores keys still
    // on the device: reading them back cannot wait here) is passed over.
    if (error instanceof InvalidEvictionError || error instanceof KeysOnDevice) return null;
    throw error;
  }
}
