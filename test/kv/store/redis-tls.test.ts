import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openKvStore } from "../../../src/kv/store/open-kv-store.js";
import { encodeSnapshot } from "../../../src/kv/store/snapshot-codec.js";
import { SnapshotStore } from "../../../src/kv/store/snapshot-store.js";
import { KvStoreUnavailable } from "../../../src/kv/store/store-errors.js";
import { capturedSnapshot } from "./support/captured-snapshot.js";
import { testSnapshotOptions } from "./support/snapshot-store-options.js";
import { startRedis, type RedisProcess, type RedisTls } from "./support/redis-server.js";

// rediss:// with a CA file and a password (docs/kv-store.md, "Backends"), on a TLS-only redis-server.

const openssl = (...args: string[]) => promisify(execFile)("openssl", args);

/** A CA, and a certificate for 127.0.0.1 that it signed. */
async function certificates(folder: string): Promise<RedisTls> {
  const file = (name: string) => join(folder, name);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await openssl("req", "-x509", ...ec, "-keyout", file("ca.key"), "-out", file("ca.crt"), "-subj", "/CN=kvwarden test CA", "-days", "1");
  await openssl("req", ...ec, "-keyout", file("server.key"), "-out", file("server.csr"), "-subj", "/CN=127.0.0.1");
  writeFileSync(file("san.ext"), "subjectAltName=IP:127.0.0.1\n");
  await openssl("x509", "-req", "-in", file("server.csr"), "-CA", file("ca.crt"), "-CAkey", file("ca.key"), "-CAcreateserial", "-out", file("server.crt"), "-days", "1", "-extfile", file("san.ext"));
  return { cert: file("server.crt"), key: file("server.key"), ca: file("ca.crt") };
}

describe("Redis over TLS with a password", () => {
  const folder = mkdtempSync(join(tmpdir(), "kvwarden-redis-tls-"));
  let tls: RedisTls;
  let redis: RedisProcess;
  beforeAll(async () => {
    tls = await certificates(folder);
    redis = await startRedis(["--requirepass", "s3cret-pass"], tls);
  }, 60_000);
  afterAll(async () => {
    await redis?.stop();
    rmSync(folder, { recursive: true, force: true });
  });

  const url = (password: string) => redis.url.replace("rediss://", `rediss://default:${password}@`);

  it("stores and reads values through rediss:// with the CA file", async () => {
    const store = await openKvStore(url("s3cret-pass"), { caFile: tls.ca });
    try {
      await store.set("greeting", Buffer.from([0, 1, 2, 255]), 60_000);
      expect(await store.get("greeting")).toEqual(Buffer.from([0, 1, 2, 255]));
      expect(store.location).toBe(redis.url);
    } finally {
      await store.close();
    }
  });

  it("saves a snapshot through node-redis (chunks joined, the manifest behind them) and loads it back, twice over", async () => {
    const store = await openKvStore(url("s3cret-pass"), { caFile: tls.ca });
    try {
      const snapshot = await capturedSnapshot();
      const snapshots = new SnapshotStore(testSnapshotOptions(store));
      const lease = await snapshots.acquire("tenant-1", "over-tls");
      for (let round = 0; round < 2; round++) {
        const saved = await snapshots.save(lease, snapshot);
        expect(saved.chunks).toBeGreaterThan(1);
        expect(encodeSnapshot((await snapshots.load("tenant-1", "over-tls"))!.snapshot).equals(encodeSnapshot(snapshot))).toBe(true);
      }
    } finally {
      await store.close();
    }
  }, 60_000);

  it("refuses a wrong password or an unknown CA with 'unavailable', never showing the password", async () => {
    for (const [password, caFile] of [["wrong-pass", tls.ca], ["s3cret-pass", undefined]] as const) {
      const error = await openKvStore(url(password), { caFile }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(KvStoreUnavailable);
      expect((error as Error).message).toContain(`KV store ${redis.url} is unavailable: `);
      expect((error as Error).message).not.toContain(password);
    }
  });
});
