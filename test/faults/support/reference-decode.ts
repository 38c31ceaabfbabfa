import { expect } from "vitest";
import type { KvwardenClient } from "../../../src/client/index.js";
import { decodeAll } from "../../support/test-server.js";

/**
 * Checks that a sequence that lived through a fault still decodes correctly:
 * its next `count` greedy tokens are those a fresh sequence with the same
 * prompt produces at the same positions. The survivor must have been fed
 * `prompt` and then only greedy decodes (no eviction).
 */
export async function expectDecodesLikeReference(client: KvwardenClient, sequenceId: string, prompt: number[], count = 8): Promise<void> {
  const { position } = (await client.stats({ sequenceId })).sequences[0];
  const generated = position - prompt.length;
  const reference = `${sequenceId}:reference`;
  await client.prefill({ sequenceId: reference, tokenIds: prompt });
  const expected = (await decodeAll(client, { sequenceId: reference, maxNewTokens: generated + count, ignoreEos: true })).slice(generated);
  await client.release(reference);
  const survivor = await decodeAll(client, { sequenceId, maxNewTokens: count, ignoreEos: true });
  expect(survivor.map((m) => [m.position, m.tokenId])).toEqual(expected.map((m) => [m.position, m.tokenId]));
}
