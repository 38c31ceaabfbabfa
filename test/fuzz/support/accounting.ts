import { expect } from "vitest";
import type { KvCacheClient } from "../../../src/gen/kvwarden/v1/kvwarden.js";
import { call } from "../../support/test-server.js";

/**
 * Checks that memory accounting is exact: the bytes in use are the sum of the
 * sequences' bytes, within the budget. `clients` are one per tenant, together
 * covering every sequence.
 */
export async function expectExactAccounting(...clients: KvCacheClient[]): Promise<void> {
  const all = await Promise.all(clients.map((client) => call(client, client.stats, {})));
  const held = all.flatMap((stats) => stats.sequences).reduce((sum, s) => sum + s.kvBytes, 0n);
  expect(all[0].kvBytesUsed).toBe(held);
  expect(all[0].kvBytesUsed).toBeLessThanOrEqual(all[0].kvBytesBudget);
}
