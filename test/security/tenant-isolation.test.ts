import { status } from "@grpc/grpc-js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KvwardenClient } from "../../src/client/index.js";
import { loadTestModel } from "../support/test-model.js";
import { decodeAll, statusOf } from "../support/test-server.js";
import { clientOf, startSecureServer, type SecureServer } from "./support/secure-server.js";

const TOKENS = { alice: "alice-token-0123456789abcdef", bob: "bob-token-0123456789abcdef" };
const EVICTION = { policy: "streaming_llm", maxTokens: 4 };

describe("tenants over gRPC", () => {
  let sidecar: SecureServer;
  let alice: KvwardenClient;
  let bob: KvwardenClient;
  const folder = mkdtempSync(join(tmpdir(), "kvwarden-tenants-"));

  beforeAll(async () => {
    const text = Object.entries(TOKENS).map(([tenant, token]) => `${token} ${tenant}`).join("\n");
    sidecar = await startSecureServer(await loadTestModel(), { tokens: { path: join(folder, "tokens"), text } });
    alice = clientOf(sidecar.address, TOKENS.alice);
    bob = clientOf(sidecar.address, TOKENS.bob);
  });
  afterAll(async () => {
    alice.close();
    bob.close();
    await sidecar.close();
    rmSync(folder, { recursive: true, force: true });
  });

  const stats = (client: KvwardenClient, sequenceId = "", includePositions = false) => client.stats({ sequenceId, includePositions });
  /** A failure with the sequence id masked: what tells another tenant's id from a missing one, if anything. */
  const failure = async (promise: Promise<unknown>, id: string) => {
    const { code, details } = await statusOf(promise);
    return { code, details: details.replaceAll(id, "ID") };
  };
  const decodeFailure = async (client: KvwardenClient, id: string) =>
    failure(decodeAll(client, { sequenceId: id, maxNewTokens: 2 }).then(() => undefined), id);

  it("keeps another tenant's sequence out of reach: NOT_FOUND exactly as for an id that does not exist", async () => {
    await alice.prefill({ sequenceId: "doc", tokenIds: [1, 403, 407, 261, 378, 432] });
    const before = await stats(alice, "doc", true);

    for (const [foreign, missing] of [
      [decodeFailure(bob, "doc"), decodeFailure(bob, "nothing")],
      [failure(bob.evict({ sequenceId: "doc", eviction: EVICTION }), "doc"), failure(bob.evict({ sequenceId: "nothing", eviction: EVICTION }), "nothing")],
      [failure(stats(bob, "doc"), "doc"), failure(stats(bob, "nothing"), "nothing")],
    ]) {
      const [a, b] = await Promise.all([foreign, missing]);
      expect(a.code).toBe(status.NOT_FOUND);
      expect(a).toEqual(b);
    }
    expect(await bob.release("doc")).toEqual({ found: false, freedBytes: 0n });

    // Bob sees none of Alice's sequences or bytes; Alice's sequence is untouched.
    const bobs = await stats(bob);
    expect(bobs).toMatchObject({ tenant: "bob", sequenceCount: 0, sequences: [], tenantKvBytes: 0n, tenantSequenceCount: 0 });
    expect(await stats(alice, "doc", true)).toEqual({ ...before, sequences: [{ ...before.sequences[0], idleMs: expect.any(BigInt) }] });
    expect(await stats(alice)).toMatchObject({ tenant: "alice", sequenceCount: 1, tenantSequenceCount: 1, tenantKvBytes: before.sequences[0].kvBytes });
  });

  it("gives Bob his own sequence under the same id; each decodes its own prompt", async () => {
    // Prefill of an id Bob does not have creates one in his tenant: not a way into Alice's.
    const reply = await bob.prefill({ sequenceId: "doc", tokenIds: [1, 403] });
    expect(reply.position).toBe(2);
    expect((await stats(alice, "doc")).sequences[0].position).toBe(6);
    const [a, b] = await Promise.all([decodeAll(alice, { sequenceId: "doc", maxNewTokens: 3 }), decodeAll(bob, { sequenceId: "doc", maxNewTokens: 3 })]);
    expect(a.map((m) => m.position)).toEqual([6, 7, 8]);
    expect(b.map((m) => m.position)).toEqual([2, 3, 4]);
    expect(b[0].tokenId).toBe(407); // the published greedy sample goes on with 407 after 1, 403
  });

  it("releases only the caller's sequence", async () => {
    expect(await bob.release("doc")).toMatchObject({ found: true });
    expect((await stats(alice, "doc")).sequences).toHaveLength(1);
    expect((await statusOf(stats(bob, "doc"))).code).toBe(status.NOT_FOUND);
  });
});
