import { status, type ServiceError } from "@grpc/grpc-js";
import { writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Residency, type KvwardenClient } from "../../../src/client/index.js";
import { startRedis, type RedisProcess } from "./support/redis-server.js";
import { startSidecar, type Sidecar } from "./support/sidecar.js";

/*
 * Two `kvwarden serve` processes sharing one real redis-server (docs/kv-store.md, "Replicas"):
 * a sequence prefilled and evicted on A, offloaded, continues on B with the tokens a copy that never
 * left A's memory decodes. Leases are 2 s so that a killed holder's hold ends quickly.
 */

const PROMPT =
  "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends, and one day she saw a big red ball.";
const TOKENS = { alice: "alice-token-0123456789", bob: "bob-token-0123456789" };

async function decoded(client: KvwardenClient, sequenceId: string, extra: Record<string, unknown> = {}): Promise<number[]> {
  const tokens: number[] = [];
  for await (const token of client.decode({ sequenceId, maxNewTokens: 12, ignoreEos: true, ...extra })) tokens.push(token.tokenId);
  return tokens;
}

async function refusal(promise: Promise<unknown>): Promise<ServiceError> {
  try {
    await promise;
  } catch (error) {
    return error as ServiceError;
  }
  throw new Error("the call succeeded");
}

/** What each scenario does to a sequence before it moves; run the same on the never-moved copy. */
const SCENARIOS: Record<string, (client: KvwardenClient, id: string) => Promise<void>> = {
  snapkv: async (client, id) => {
    await client.prefill({ sequenceId: id, text: PROMPT, eviction: { policy: "snapkv", maxTokens: 36 } });
  },
  adakv: async (client, id) => {
    await client.prefill({ sequenceId: id, text: PROMPT });
    await client.evict({ sequenceId: id, eviction: { policy: "adakv", maxTokens: 36 } });
  },
  "h2o decode budget": async (client, id) => {
    await client.prefill({ sequenceId: id, text: PROMPT });
    await decoded(client, id, { eviction: { policy: "h2o", maxTokens: 24 } });
  },
};

describe("replicas sharing one Redis", () => {
  let redis: RedisProcess;
  let a: Sidecar;
  let b: Sidecar;
  let alice: { a: KvwardenClient; b: KvwardenClient };
  /** Flags every replica of this file starts with. */
  let common: string[];

  beforeAll(async () => {
    redis = await startRedis();
    const tokens = join(mkdtempSync(join(tmpdir(), "kvw-replicas-")), "tokens");
    writeFileSync(tokens, `${TOKENS.alice} alice\n${TOKENS.bob} bob\n`);
    common = ["--kv-store", redis.url, "--kv-store-prefix", "replicas", "--kv-store-lease", "2", "--auth-tokens", tokens];
    [a, b] = await Promise.all([startSidecar([...common, "--replica-name", "replica-a"]), startSidecar([...common, "--replica-name", "replica-b"])]);
    alice = { a: a.client(TOKENS.alice), b: b.client(TOKENS.alice) };
  }, 120_000);

  afterAll(async () => {
    a?.kill();
    b?.kill();
    await redis?.stop();
  });

  for (const [name, prepare] of Object.entries(SCENARIOS)) {
    it(`${name}: prefilled on A, offloaded, decoded on B: the tokens of a never-moved copy`, async () => {
      const id = `moved-${name}`;
      await prepare(alice.a, `${id}-copy`);
      await prepare(alice.a, id);
      const before = (await alice.a.stats({ sequenceId: id })).sequences[0];
      const offload = await alice.a.offload(id);
      expect(offload.freedBytes).toBe(before.kvBytes);
      expect(Number(offload.storedBytes)).toBeGreaterThan(0);
      const onA = await alice.a.stats();
      expect(onA.sequences.find((s) => s.sequenceId === id)).toMatchObject({ residency: Residency.RESIDENCY_STORED, storedBytes: offload.storedBytes, kvBytes: 0n });
      expect(onA.kvBytesUsed).toBe(onA.sequences.reduce((sum, s) => sum + s.kvBytes, 0n));

      const expected = await decoded(alice.a, `${id}-copy`);
      expect(await decoded(alice.b, id)).toEqual(expected);
      const onB = (await alice.b.stats({ sequenceId: id })).sequences[0];
      expect(onB.residency).toBe(Residency.RESIDENCY_BOTH);
      expect(onB.storedBytes).toBe(offload.storedBytes);
      // B holds it now: A is told so, by name.
      const held = await refusal(decoded(alice.a, id));
      expect(held.code).toBe(status.ABORTED);
      expect(held.details).toContain("replica-b");
    }, 120_000);
  }

  it("keeps tenants apart: another tenant's stored sequence is not found, on either replica", async () => {
    await alice.a.prefill({ sequenceId: "private", text: PROMPT });
    await alice.a.offload("private");
    const bob = b.client(TOKENS.bob);
    expect((await refusal(decoded(bob, "private"))).code).toBe(status.NOT_FOUND);
    expect((await bob.release("private")).found).toBe(false);
    expect((await refusal(bob.stats({ sequenceId: "private" }))).code).toBe(status.NOT_FOUND);
    // Stats naming a stored sequence restores it.
    expect((await alice.b.stats({ sequenceId: "private" })).sequences[0]).toMatchObject({ residency: Residency.RESIDENCY_BOTH, kvBytes: expect.any(BigInt) });
    expect((await alice.b.stats({ sequenceId: "private" })).sequences[0].kvBytes).toBeGreaterThan(0n);
    expect(await decoded(alice.b, "private")).toHaveLength(12);
  }, 60_000);

  it("Release deletes the stored snapshot: no replica finds the sequence after", async () => {
    await alice.a.prefill({ sequenceId: "released", text: PROMPT });
    await alice.a.offload("released");
    expect(await alice.b.release("released")).toMatchObject({ found: true, freedBytes: 0n });
    expect(await redis.cli("--scan", "--pattern", "replicas:*released*:manifest")).toBe("");
    expect((await refusal(decoded(alice.a, "released"))).code).toBe(status.NOT_FOUND);
  }, 60_000);

  it("a corrupted chunk is DATA_LOSS, and nothing is restored", async () => {
    await alice.a.prefill({ sequenceId: "damaged", text: PROMPT });
    await alice.a.offload("damaged");
    const [chunk] = (await redis.cli("--scan", "--pattern", "replicas:*damaged*:chunk:*")).trim().split("\n");
    await redis.cli("SETRANGE", chunk, "100", "garbage");
    const damaged = await refusal(decoded(alice.b, "damaged"));
    expect(damaged.code).toBe(status.DATA_LOSS);
    expect((await alice.b.stats()).sequences.map((s) => s.sequenceId)).not.toContain("damaged");
  }, 60_000);

  it("a killed holder's sequence is restored on B from its last snapshot once the lease expires", async () => {
    const killed = await startSidecar([...common, "--replica-name", "replica-killed"]);
    try {
      const onKilled = killed.client(TOKENS.alice);
      await onKilled.prefill({ sequenceId: "orphan", text: PROMPT, eviction: { policy: "snapkv", maxTokens: 36 } });
      await onKilled.offload("orphan");
      // Decoding restores it there: the replica holds it again, then dies holding it.
      const expected = await decoded(onKilled, "orphan");
      killed.kill();
      await killed.serve.exited;
      const held = await refusal(decoded(alice.b, "orphan"));
      expect(held.code).toBe(status.ABORTED);
      expect(held.details).toContain("replica-killed");
      await new Promise((resolve) => setTimeout(resolve, 2_100));
      // The last snapshot (taken before the decode on the killed replica) continues as it did there.
      expect(await decoded(alice.b, "orphan")).toEqual(expected);
    } finally {
      killed.kill();
    }
  }, 120_000);

  it("with the store stopped, Offload is UNAVAILABLE and the sequence stays resident and usable", async () => {
    await alice.b.prefill({ sequenceId: "grounded", text: PROMPT });
    await alice.b.prefill({ sequenceId: "grounded-copy", text: PROMPT });
    const before = (await alice.b.stats({ sequenceId: "grounded" })).sequences[0];
    await redis.stop();
    const down = await refusal(alice.b.offload("grounded"));
    expect(down.code).toBe(status.UNAVAILABLE);
    expect(down.details).toContain("unavailable");
    expect((await alice.b.stats({ sequenceId: "grounded" })).sequences[0]).toMatchObject({ kvBytes: before.kvBytes, residency: Residency.RESIDENCY_RESIDENT });
    expect(await decoded(alice.b, "grounded")).toEqual(await decoded(alice.b, "grounded-copy"));
    // Whether a snapshot exists cannot be known: a new id and Release are refused too, changing nothing.
    expect((await refusal(alice.b.prefill({ sequenceId: "new-while-down", text: PROMPT }))).code).toBe(status.UNAVAILABLE);
    expect((await refusal(alice.b.release("grounded"))).code).toBe(status.UNAVAILABLE);
    expect((await alice.b.stats({ sequenceId: "grounded" })).sequences[0].residency).toBe(Residency.RESIDENCY_RESIDENT);
    expect((await alice.b.stats()).sequences.map((s) => s.sequenceId)).not.toContain("new-while-down");
  }, 60_000);
});
