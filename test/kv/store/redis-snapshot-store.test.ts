import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { RedisKvStore } from "../../../src/kv/store/redis-kv-store.js";
import type { KvSnapshot } from "../../../src/kv/store/sequence-snapshot.js";
import { encodeSnapshot, encodeSnapshotChunks } from "../../../src/kv/store/snapshot-codec.js";
import { SnapshotStore, type SnapshotStoreOptions } from "../../../src/kv/store/snapshot-store.js";
import { KvStoreFull, KvStoreUnavailable, SequenceHeldElsewhere, SnapshotCorrupt, StaleLease } from "../../../src/kv/store/store-errors.js";
import { capturedSnapshot } from "./support/captured-snapshot.js";
import { startRedis, type RedisProcess, type RedisServerBinary } from "./support/redis-server.js";
import { testSnapshotOptions } from "./support/snapshot-store-options.js";

// The snapshot store on a real redis-server, and on a real valkey-server (docs/kv-store.md): format, faults, leases and fencing.

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.each<RedisServerBinary>(["redis-server", "valkey-server"])("snapshots in %s", (server) => {
  let redis: RedisProcess;
  let store: RedisKvStore;
  let snapshot: KvSnapshot;
  const options = (overrides: Partial<SnapshotStoreOptions> = {}): SnapshotStoreOptions => testSnapshotOptions(store, overrides);

  beforeAll(async () => {
    [redis, snapshot] = await Promise.all([startRedis([], undefined, server), capturedSnapshot()]);
    store = await RedisKvStore.open(redis.url);
  }, 60_000);
  afterAll(async () => {
    await store?.close();
    await redis?.stop();
  });

  async function saved(sequenceId: string, overrides: Partial<SnapshotStoreOptions> = {}) {
    const snapshots = new SnapshotStore(options(overrides));
    const lease = await snapshots.acquire("tenant-1", sequenceId);
    const result = await snapshots.save(lease, snapshot);
    return { snapshots, lease, result, manifest: (await snapshots.currentManifest("tenant-1", sequenceId))! };
  }

  it("reads back what it wrote, byte for byte, in checksummed chunks that expire with the sequence TTL", async () => {
    const { snapshots, result, lease } = await saved("round-trip");
    const encoded = encodeSnapshot(snapshot);
    expect(result).toMatchObject({ bytes: encoded.length, chunks: encodeSnapshotChunks(snapshot, 8192).length });
    expect(encodeSnapshot((await snapshots.load("tenant-1", "round-trip"))!.snapshot).equals(encoded)).toBe(true);
    const ttl = Number(await redis.cli("PTTL", lease.keys.chunk(result.snapshotId, 0)));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(600_000);
    expect(Number(await redis.cli("PTTL", lease.keys.manifest))).toBeGreaterThan(0);
    // A second write replaces the first; the first one's chunks are deleted (after the save answers: it does not wait for that).
    const second = await snapshots.save(lease, snapshot);
    await vi.waitFor(async () => expect(await store.get(lease.keys.chunk(result.snapshotId, 0))).toBeNull());
    expect((await snapshots.currentManifest("tenant-1", "round-trip"))!.snapshotId).toBe(second.snapshotId);
  });

  it("deletes a snapshot only under the lease: Release", async () => {
    const { snapshots, lease, manifest } = await saved("released");
    const other = new SnapshotStore(options({ replica: "replica-b" }));
    await expect(other.remove({ ...lease, owner: "replica-b" })).rejects.toBeInstanceOf(StaleLease);
    expect(await snapshots.load("tenant-1", "released")).not.toBeNull();
    await snapshots.remove(lease);
    expect(await snapshots.load("tenant-1", "released")).toBeNull();
    expect(await store.get(lease.keys.chunk(manifest.snapshotId, 0))).toBeNull();
  });

  it("refuses a corrupted, truncated or missing chunk with DATA_LOSS", async () => {
    const { snapshots, lease, manifest } = await saved("corrupt");
    const key = lease.keys.chunk(manifest.snapshotId, 1);
    const good = (await store.get(key))!;
    const flipped = Buffer.from(good);
    flipped[100] ^= 0x01;
    for (const damaged of [flipped, good.subarray(0, good.length - 1)]) {
      await store.set(key, damaged, 60_000);
      const error = await snapshots.load("tenant-1", "corrupt").catch((e: unknown) => e);
      expect(error).toBeInstanceOf(SnapshotCorrupt);
      expect((error as SnapshotCorrupt).code).toBe("DATA_LOSS");
    }
    await store.delete([key]);
    await expect(snapshots.load("tenant-1", "corrupt")).rejects.toThrow(/chunk 2 of \d+ of snapshot .* is missing/);
  });

  it("keeps a snapshot whose manifest was never written invisible", async () => {
    const { snapshots, lease, manifest } = await saved("half-written");
    await redis.cli("DEL", lease.keys.manifest);
    expect(await store.get(lease.keys.chunk(manifest.snapshotId, 0))).not.toBeNull(); // the chunks are there
    expect(await snapshots.load("tenant-1", "half-written")).toBeNull();
    // A manifest cut short is damage, not a snapshot.
    await redis.cli("HSET", lease.keys.manifest, "f", String(lease.token), "v", '{"format":"kvwarden-kv-snapshot","vers');
    await expect(snapshots.load("tenant-1", "half-written")).rejects.toBeInstanceOf(SnapshotCorrupt);
  });

  it("writes a manifest sent right behind its chunks, without their replies, and refuses one whose chunk is not there", async () => {
    const snapshots = new SnapshotStore(options());
    const lease = await snapshots.acquire("tenant-1", "pipelined");
    const chunkKeys = [0, 1].map((i) => lease.keys.chunk("direct", i));
    const writes = chunkKeys.map((key, i) => store.set(key, [Buffer.alloc(3 * 2 ** 20, i), Buffer.from("end")], 60_000));
    expect(await store.putManifest(lease.keys, Buffer.from("first"), lease, 60_000, chunkKeys)).toBe("written");
    await Promise.all(writes);
    expect(await store.getManifest(lease.keys.manifest)).toEqual(Buffer.from("first"));
    expect(await store.putManifest(lease.keys, Buffer.from("second"), lease, 60_000, [...chunkKeys, lease.keys.chunk("direct", 2)])).toBe("incomplete");
    expect(await store.getManifest(lease.keys.manifest)).toEqual(Buffer.from("first"));
  });

  it("never finds another tenant's or another model's snapshot", async () => {
    await saved("isolated");
    expect(await new SnapshotStore(options()).load("tenant-2", "isolated")).toBeNull();
    expect(await new SnapshotStore(options({ model: "model-b" })).load("tenant-1", "isolated")).toBeNull();
    // A manifest copied under another tenant's key names its own tenant, and is refused.
    const other = new SnapshotStore(options()).keys("tenant-2", "isolated");
    await redis.cli("COPY", new SnapshotStore(options()).keys("tenant-1", "isolated").manifest, other.manifest);
    await expect(new SnapshotStore(options()).load("tenant-2", "isolated")).rejects.toThrow(/names tenant 'tenant-1', its key 'tenant-2'/);
  });

  it("lets one replica hold a sequence at a time, and names the holder to the others", async () => {
    const a = new SnapshotStore(options({ leaseMs: 300 }));
    const b = new SnapshotStore(options({ replica: "replica-b", leaseMs: 300 }));
    const held = await a.acquire("tenant-1", "leased");
    const refused = await b.acquire("tenant-1", "leased").catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(SequenceHeldElsewhere);
    expect(refused).toMatchObject({ holder: "replica-a", code: "ABORTED" });
    expect((await a.acquire("tenant-1", "leased")).token).toBe(held.token); // its holder may take it again
    // Not renewed, the lease expires; then the other replica gets it, with a greater fencing token.
    while (await store.get(held.keys.lease)) await sleep(50);
    const taken = await b.acquire("tenant-1", "leased");
    expect(taken.token).toBeGreaterThan(held.token);
    await expect(a.renew(held)).rejects.toBeInstanceOf(StaleLease);
    await b.renew(taken);
    expect(await a.release(held)).toBe(false);
    expect(await b.release(taken)).toBe(true);
  });

  it("refuses a stale replica's write, so it never overwrites a newer snapshot", async () => {
    const a = new SnapshotStore(options({ leaseMs: 300 }));
    const b = new SnapshotStore(options({ replica: "replica-b" }));
    const stale = await a.acquire("tenant-1", "fenced");
    while (await store.get(stale.keys.lease)) await sleep(50);
    const current = await b.acquire("tenant-1", "fenced");
    const written = await b.save(current, snapshot);
    await b.release(current);
    // Replica A comes back believing it still holds the sequence: its write is refused, whole.
    await expect(a.save(stale, snapshot)).rejects.toBeInstanceOf(StaleLease);
    expect((await b.currentManifest("tenant-1", "fenced"))!.snapshotId).toBe(written.snapshotId);
    const chunkKeys = (await redis.cli("--scan", "--pattern", `*fenced*:chunk:${stale.token}-*`)).trim();
    expect(chunkKeys).toBe(""); // and its chunks are gone
    expect((await redis.cli("--scan", "--pattern", `*fenced*:chunk:${current.token}-*`)).trim()).not.toBe("");
    // Even with the fencing counter lost, a new lease's token passes the manifest's.
    await redis.cli("DEL", current.keys.fence);
    expect((await a.acquire("tenant-1", "fenced")).token).toBeGreaterThan(current.token);
  });

  it("answers a write that meets maxmemory with noeviction with a typed 'full' error", async () => {
    const small = await startRedis(["--maxmemory", "3mb", "--maxmemory-policy", "noeviction"], undefined, server);
    const full = await RedisKvStore.open(small.url);
    try {
      const snapshots = new SnapshotStore(options({ store: full }));
      let error: unknown;
      for (let i = 0; i < 200 && error === undefined; i++) {
        const lease = await snapshots.acquire("tenant-1", `filler-${i}`).catch((e: unknown) => e);
        error = lease instanceof Error ? lease : await snapshots.save(lease as never, snapshot).then(() => undefined, (e: unknown) => e);
      }
      expect(error).toBeInstanceOf(KvStoreFull);
      expect(error).toMatchObject({ code: "RESOURCE_EXHAUSTED", message: expect.stringMatching(/is full: OOM/) });
    } finally {
      await full.close();
      await small.stop();
    }
  });

  it("answers with a typed 'unavailable' error when Redis stops mid-write, and keeps the last snapshot when only the connection drops", async () => {
    const own = await startRedis([], undefined, server);
    const client = await RedisKvStore.open(own.url);
    try {
      const snapshots = new SnapshotStore(options({ store: client }));
      const lease = await snapshots.acquire("tenant-1", "interrupted");
      const first = await snapshots.save(lease, snapshot);
      // Writes are held by the server, then the connection drops under them.
      await own.cli("CLIENT", "PAUSE", "10000", "WRITE");
      const dropped = snapshots.save(lease, snapshot).catch((e: unknown) => e);
      await sleep(100);
      await own.cli("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes");
      await own.cli("CLIENT", "UNPAUSE");
      expect(await dropped).toBeInstanceOf(KvStoreUnavailable);
      let current: { snapshotId?: string } | undefined; // undefined until the client has reconnected
      while (current === undefined) current = await snapshots.currentManifest("tenant-1", "interrupted").then((m) => ({ snapshotId: m?.snapshotId }), () => undefined);
      expect(current.snapshotId).toBe(first.snapshotId);
      expect(encodeSnapshot((await snapshots.load("tenant-1", "interrupted"))!.snapshot).equals(encodeSnapshot(snapshot))).toBe(true);

      // Now the server goes away while a write waits on it.
      await own.cli("CLIENT", "PAUSE", "10000", "WRITE");
      const stopped = snapshots.save(lease, snapshot).catch((e: unknown) => e);
      await sleep(100);
      await own.stop();
      const error = await stopped;
      expect(error).toBeInstanceOf(KvStoreUnavailable);
      expect(error).toMatchObject({ code: "UNAVAILABLE", message: expect.stringContaining(`KV store redis://127.0.0.1:${own.port}`) });
      await expect(snapshots.load("tenant-1", "interrupted")).rejects.toBeInstanceOf(KvStoreUnavailable);
    } finally {
      await client.close();
      await own.stop();
    }
  });

  it("answers writes to a read-only replica with 'unavailable'", async () => {
    const replica = await startRedis(["--replicaof", "127.0.0.1", String(redis.port)], undefined, server);
    const client = await RedisKvStore.open(replica.url);
    try {
      const error = await client.set("key", Buffer.from("value"), 60_000).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(KvStoreUnavailable);
      expect((error as Error).message).toMatch(/is unavailable: READONLY/);
    } finally {
      await client.close();
      await replica.stop();
    }
  });

  it("fails to open a store nobody listens on with 'unavailable'", async () => {
    const gone = await startRedis([], undefined, server);
    await gone.stop();
    await expect(RedisKvStore.open(gone.url)).rejects.toBeInstanceOf(KvStoreUnavailable);
  });
});
