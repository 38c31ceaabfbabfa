import type { KvwardenClient, SequenceStats } from "../../../src/client/index.js";

/** A sequence as Stats shows it (positions of every head, bytes), without the idle time that changes by itself. */
export async function sequenceState(client: KvwardenClient, sequenceId: string): Promise<Omit<SequenceStats, "idleMs">> {
  const { idleMs: _, ...state } = (await client.stats({ sequenceId, includePositions: true })).sequences[0];
  return state;
}
