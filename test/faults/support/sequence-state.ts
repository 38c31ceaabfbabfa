import type { KvCacheClient, SequenceStats } from "../../../src/gen/kvwarden/v1/kvwarden.js";
import { call } from "../../support/test-server.js";

/** A sequence as Stats shows it (positions of every head, bytes), without the idle time that changes by itself. */
export async function sequenceState(client: KvCacheClient, sequenceId: string): Promise<Omit<SequenceStats, "idleMs">> {
  const { idleMs: _, ...state } = (await call(client, client.stats, { sequenceId, includePositions: true })).sequences[0];
  return state;
}
