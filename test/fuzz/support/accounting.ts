import { expect } from "vitest";
import type { KvwardenClient } from "../../../src/client/index.js";

/**
 * Checks that memory accounting is exact: the bytes in use are the sum of the
 * sequences' bytes, within the budget. `clients` are one per tenant, together
 * covering every sequence.
 */
export async function expectExactAccounting(...clients: KvwardenClient[]): Promise<void> {
  const all = await Promise.all(clients.map((client) => client.stats()));
  const held = all.flatMap((stats) => stats.sequences).reduce((sum, s) => sum + s.kvBytes, 0n);
  expect(all[0].kvBytesUsed).toBe(held);
  expect(all[0].kvBytesUsed).toBeLessThanOrEqual(all[0].kvBytesBudget);
}
