import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine } from "../../../src/engine/engine.js";
import type { KvStore } from "../../../src/kv/store/kv-store.js";
import { openKvStore } from "../../../src/kv/store/open-kv-store.js";
import { parseClusterUrl } from "../../../src/kv/store/redis-cluster-url.js";
import type { KvSnapshot } from "../../../src/kv/store/sequence-snapshot.js";
import { encodeSnapshot, encodeSnapshotChunks } from "../../../src/kv/store/snapshot-codec.js";
import { SnapshotStore, type SnapshotStoreOptions } from "../../../src/kv/store/snapshot-store.js";
import { KvStoreUnavailable, SequenceHeldElsewhere, StaleLease } from "../../../src/kv/store/store-errors.js";
import { capturedSnapshot } from "./support/captured-snapshot.js";
import { startRedisCluster, type RedisCluster } from "./support/redis-cluster.js";
import { freePort } from "./support/redis-server.js";
import { loadTestModel, REFERENCE_TEXT } from "../../support/test-model.js";
import { DEFAULT_TEST_OPTIONS } from "../../support/test-server.js";
import { testSnapshotOptions } from "./support/snapshot-store-options.js";

// The snapshot store on a real Redis Cluster of three primaries (docs/kv-store.md, "Redis Cluster").

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const GREEDY = { temperature: 0, topK: 0, topP: 1, seed: 0n };

async function decoded(engine: Engine, sequenceId: string): Promise<number[]> {
  const tokens: number[] = [];
  for await (const token of engine.decode({ sequenceId, maxNewTokens: 12, sampling: GREEDY, stopTokenIds: [], ignoreEos: true })) tokens.push(token.tokenId);
  return tokens;
}

describe("snapshots in a Redis Cluster", () => {
  let cluster: RedisCluster;
  let store: KvStore;
  let snapshot: KvSnapshot;
  const options = (overrides: Partial<SnapshotStoreOptions> = {}): SnapshotStoreOptions => testSnapshotOptions(store, overrides);
  /** Every key each node holds, by node. */
  const keysByNode = async () => Promise.all(cluster.nodes.map(async (node) => (await node.cli("KEYS", "*")).split("\n").filter(Boolean)));

  beforeAll(async () => {
    [cluster, snapshot] = await Promise.all([startRedisCluster(3), capturedSnapshot()]);
    // Two of the three nodes named: the client finds the third itself.
    store = await openKvStore(`redis+cluster://127.0.0.1:${cluster.nodes[0].port},127.0.0.1:${cluster.nodes[1].port}`);
  }, 90_000);
  afterAll(async () => {
    await store?.close();
    await cluster?.stop();
  });

  it("writes and reads back snapshots byte for byte, each sequence's keys on one node, the sequences spread over the nodes", async () => {
    const snapshots = new SnapshotStore(options());
    const encoded = encodeSnapshot(snapshot);
    const sequenceIds = Array.from({ length: 12 }, (_, i) => `spread-${i}`);
    for (const sequenceId of sequenceIds) {
      const saved = await snapshots.save(await snapshots.acquire("tenant-1", sequenceId), snapshot);
      expect(saved.chunks).toBe(encodeSnapshotChunks(snapshot, 8192).length);
    }
    for (const sequenceId of sequenceIds) expect(encodeSnapshot((await snapshots.load("tenant-1", sequenceId))!.snapshot).equals(encoded)).toBe(true);

    const byNode = await keysByNode();
    for (const sequenceId of sequenceIds) {
      const base = snapshots.keys("tenant-1", sequenceId).base;
      const holders = byNode.filter((keys) => keys.some((key) => key.startsWith(`${base}:`)));
      expect(holders).toHaveLength(1); // manifest, lease, fence and every chunk in one slot (the hash tag)
      expect(holders[0].filter((key) => key.startsWith(`${base}:chunk:`))).toHaveLength(encodeSnapshotChunks(snapshot, 8192).length);
    }
    expect(byNode.filter((keys) => keys.some((key) => key.startsWith("kvw:v1:{model-a:tenant-1:spread-"))).length).toBeGreaterThanOrEqual(2);
  });

  it("names the holder to another replica, refuses a stale writer and keeps the newer snapshot", async () => {
    const a = new SnapshotStore(options({ leaseMs: 300 }));
    const b = new SnapshotStore(options({ replica: "replica-b" }));
    const leaseA = await a.acquire("tenant-1", "fenced");
    await a.save(leaseA, snapshot);
    const held = await b.acquire("tenant-1", "fenced").catch((error: unknown) => error);
    expect(held).toBeInstanceOf(SequenceHeldElsewhere);
    expect((held as Error).message).toMatch(/replica-a/);
    await sleep(500);
    const leaseB = await b.acquire("tenant-1", "fenced");
    expect(leaseB.token).toBeGreaterThan(leaseA.token);
    const newer = await b.save(leaseB, snapshot);
    await expect(a.save(leaseA, snapshot)).rejects.toBeInstanceOf(StaleLease);
    expect((await b.currentManifest("tenant-1", "fenced"))!.snapshotId).toBe(newer.snapshotId);
  });

  it("deletes every chunk and the manifest on Release", async () => {
    const snapshots = new SnapshotStore(options());
    const lease = await snapshots.acquire("tenant-1", "released");
    await snapshots.save(lease, snapshot);
    await snapshots.remove(lease);
    expect(await snapshots.load("tenant-1", "released")).toBeNull();
    const base = snapshots.keys("tenant-1", "released").base;
    expect((await keysByNode()).flat().filter((key) => key.startsWith(`${base}:chunk:`) || key === `${base}:manifest`)).toEqual([]);
  });

  it("carries a sequence from one engine to another through the cluster: offloaded after snapkv, decoded elsewhere with the tokens of a never-moved copy", async () => {
    const model = await loadTestModel();
    const eviction = { policy: "snapkv", budget: { maxTokens: 36 }, params: {} };
    const engineAs = (replica: string) =>
      new Engine(model, { ...DEFAULT_TEST_OPTIONS, kvStore: { snapshots: new SnapshotStore(options({ prefix: "engines", model: "stories260K", replica })), leaseMs: 60_000 } });
    const [reference, a, b] = [new Engine(model, DEFAULT_TEST_OPTIONS), engineAs("replica-a"), engineAs("replica-b")];
    try {
      await reference.prefill({ sequenceId: "moved", text: REFERENCE_TEXT, eviction });
      const prefilled = await a.prefill({ sequenceId: "moved", text: REFERENCE_TEXT, eviction });
      expect(prefilled.eviction).toMatchObject({ applied: true }); // the prompt is longer than the budget: snapkv evicted
      const offloaded = await a.offload("moved");
      expect(offloaded.storedBytes).toBeGreaterThan(0);
      expect(await decoded(b, "moved")).toEqual(await decoded(reference, "moved"));
      expect(b.stats({ sequenceId: "moved" }).sequences[0].residency).toBe("both");
    } finally {
      for (const engine of [reference, a, b]) engine.close();
    }
  });

  it("answers UNAVAILABLE when no node answers", async () => {
    const closed = await freePort();
    const refused = await openKvStore(`redis+cluster://127.0.0.1:${closed}`).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(KvStoreUnavailable);
    expect((refused as Error).message).toContain(`redis+cluster://127.0.0.1:${closed}`);
  });

  it("parses node lists and credentials, and shows the URL without them", () => {
    expect(parseClusterUrl("rediss+cluster://app:p%40ss@10.0.0.1:6379,[::1]:7000/")).toEqual({
      tls: true,
      username: "app",
      password: "p@ss",
      nodes: [
        { host: "10.0.0.1", port: 6379 },
        { host: "::1", port: 7000 },
      ],
      location: "rediss+cluster://10.0.0.1:6379,[::1]:7000",
    });
    expect(parseClusterUrl("redis+cluster://:secret@h:1")).toMatchObject({ username: undefined, password: "secret", location: "redis+cluster://h:1" });
    expect(() => parseClusterUrl("redis+cluster://h:1/3")).toThrow(/only database 0/);
    expect(() => parseClusterUrl("redis+cluster://h,h2:2")).toThrow(/node 'h' is not host:port/);
  });
});
