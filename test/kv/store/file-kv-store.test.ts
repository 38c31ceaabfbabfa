import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FileKvStore } from "../../../src/kv/store/file-kv-store.js";
import { openKvStore } from "../../../src/kv/store/open-kv-store.js";
import type { KvSnapshot } from "../../../src/kv/store/sequence-snapshot.js";
import { encodeSnapshot } from "../../../src/kv/store/snapshot-codec.js";
import { SnapshotStore, type SnapshotStoreOptions } from "../../../src/kv/store/snapshot-store.js";
import { SequenceHeldElsewhere, SnapshotCorrupt, StaleLease } from "../../../src/kv/store/store-errors.js";
import { capturedSnapshot } from "./support/captured-snapshot.js";
import { testSnapshotOptions } from "./support/snapshot-store-options.js";

// The store in a local folder, file:///path (docs/kv-store.md, "Backends"): what survives reopening
// it, expiry, corruption, and leases between two stores on one folder (two processes in one pod).

describe("the file store", () => {
  const root = mkdtempSync(join(tmpdir(), "kvwarden-file-store-"));
  const url = pathToFileURL(join(root, "store")).toString();
  let snapshot: KvSnapshot;
  const options = testSnapshotOptions;

  beforeAll(async () => {
    snapshot = await capturedSnapshot();
  }, 60_000);
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it("keeps a snapshot across closing and reopening the folder", async () => {
    const first = (await openKvStore(url)) as FileKvStore;
    const writer = new SnapshotStore(options(first));
    const lease = await writer.acquire("tenant-1", "kept");
    await writer.save(lease, snapshot);
    await writer.release(lease);
    await first.close();

    const reopened = await FileKvStore.open(url);
    const loaded = await new SnapshotStore(options(reopened, { replica: "replica-b" })).load("tenant-1", "kept");
    expect(encodeSnapshot(loaded!.snapshot).equals(encodeSnapshot(snapshot))).toBe(true);
    expect(await new SnapshotStore(options(reopened)).load("tenant-2", "kept")).toBeNull();
    expect(readdirSync(join(root, "store")).filter((name) => name.startsWith(".tmp-"))).toEqual([]);
  });

  it("writes a manifest only once the chunks it names are written, waiting for those under way", async () => {
    const store = await FileKvStore.open(url);
    const snapshots = new SnapshotStore(options(store));
    const lease = await snapshots.acquire("tenant-1", "ordered");
    const chunkKeys = [0, 1].map((i) => lease.keys.chunk("direct", i));
    const writes = chunkKeys.map((key, i) => store.set(key, [Buffer.alloc(2 ** 20, i), Buffer.from("end")], 60_000));
    expect(await store.putManifest(lease.keys, Buffer.from("first"), lease, 60_000, chunkKeys)).toBe("written");
    await Promise.all(writes);
    expect((await store.get(chunkKeys[1]))!.equals(Buffer.concat([Buffer.alloc(2 ** 20, 1), Buffer.from("end")]))).toBe(true);
    expect(await store.putManifest(lease.keys, Buffer.from("second"), lease, 60_000, [...chunkKeys, lease.keys.chunk("direct", 2)])).toBe("incomplete");
    expect(await store.getManifest(lease.keys.manifest)).toEqual(Buffer.from("first"));
    await store.close();
  });

  it("keeps what a replica wrote before it was killed (SIGKILL), and lets another take the sequence once its lease expires", async () => {
    const holder = spawn(process.execPath, ["--import", "tsx", "test/kv/store/support/file-store-holder.ts", url, "replica-killed", "4000"], { stdio: ["ignore", "pipe", "inherit"] });
    let said = "";
    holder.stdout.on("data", (data: Buffer) => (said += data.toString()));
    while (!said.includes("written")) await Promise.race([once(holder.stdout, "data"), once(holder, "exit").then(() => Promise.reject(new Error("the holder exited early")))]);
    holder.kill("SIGKILL");
    await once(holder, "exit");

    const store = await FileKvStore.open(url);
    const successor = new SnapshotStore(options(store, { replica: "replica-next" }));
    const refused = await successor.acquire("tenant-1", "killed").catch((e: unknown) => e);
    expect(refused).toMatchObject({ holder: "replica-killed" });
    const lease = await (async () => {
      for (;;) {
        const attempt = await successor.acquire("tenant-1", "killed").catch((e: unknown) => e);
        if (!(attempt instanceof SequenceHeldElsewhere)) return attempt as Awaited<ReturnType<SnapshotStore["acquire"]>>;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })();
    expect(lease.token).toBeGreaterThan(1);
    const restored = (await successor.load("tenant-1", "killed"))!;
    expect(encodeSnapshot(restored.snapshot).equals(encodeSnapshot(snapshot))).toBe(true);
    await successor.save(lease, restored.snapshot);
  }, 60_000);

  it("records expiry, hides expired values and sweeps them", async () => {
    const store = await FileKvStore.open(url);
    await store.set("short", Buffer.from("brief"), 1_000);
    await store.set("long", Buffer.from("lasting"), 3_600_000);
    expect((await store.get("short"))?.toString()).toBe("brief");
    const later = Date.now() + 2_000;
    expect(await store.get("short", later)).toBeNull();
    expect(await store.sweep(later)).toBeGreaterThanOrEqual(1);
    expect(await store.get("short")).toBeNull();
    expect((await store.get("long"))?.toString()).toBe("lasting");
  });

  it("refuses a corrupted chunk with DATA_LOSS", async () => {
    const store = await FileKvStore.open(url);
    const snapshots = new SnapshotStore(options(store));
    const lease = await snapshots.acquire("tenant-1", "corrupt");
    const { snapshotId } = await snapshots.save(lease, snapshot);
    const file = join(root, "store", encodeURIComponent(lease.keys.chunk(snapshotId, 0)));
    const bytes = await readFile(file);
    bytes[bytes.length - 5] ^= 0x80;
    await writeFile(file, bytes);
    await expect(snapshots.load("tenant-1", "corrupt")).rejects.toBeInstanceOf(SnapshotCorrupt);
  });

  it("lets one of two stores on the folder hold a sequence, and fences the other's writes", async () => {
    const [a, b] = await Promise.all([FileKvStore.open(url), FileKvStore.open(url)]);
    const one = new SnapshotStore(options(a, { leaseMs: 200 }));
    const two = new SnapshotStore(options(b, { replica: "replica-b", leaseMs: 200 }));
    const attempts = await Promise.allSettled([one.acquire("tenant-1", "contended"), two.acquire("tenant-1", "contended")]);
    expect(attempts.filter((a) => a.status === "fulfilled")).toHaveLength(1);
    const refused = attempts.find((a) => a.status === "rejected") as PromiseRejectedResult;
    expect(refused.reason).toBeInstanceOf(SequenceHeldElsewhere);

    const winner = attempts.findIndex((a) => a.status === "fulfilled");
    const [holder, other] = winner === 0 ? [one, two] : [two, one];
    const stale = (attempts[winner] as PromiseFulfilledResult<Awaited<ReturnType<SnapshotStore["acquire"]>>>).value;
    while (await a.get(stale.keys.lease)) await new Promise((resolve) => setTimeout(resolve, 50));
    const current = await other.acquire("tenant-1", "contended");
    expect(current.token).toBeGreaterThan(stale.token);
    const written = await other.save(current, snapshot);
    await expect(holder.save(stale, snapshot)).rejects.toBeInstanceOf(StaleLease);
    expect((await holder.currentManifest("tenant-1", "contended"))!.snapshotId).toBe(written.snapshotId);
  });

  it("names the schemes it supports when given another", async () => {
    await expect(openKvStore("memcached://127.0.0.1:11211")).rejects.toThrow(/scheme 'memcached:' is not supported: use redis:\/\/, rediss:\/\/, redis\+cluster:\/\/, rediss\+cluster:\/\/ or file:\/\//);
  });
});
