import { createHash, randomUUID } from "node:crypto";
import { mkdir, open, readdir, readFile, rename, rm, rmdir, stat, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { FenceKeys, HeldLease, KvStore, LeaseAttempt, ManifestWrite, StoredValue } from "./kv-store.js";
import { KvStoreFull, KvStoreUnavailable } from "./store-errors.js";

/** Each file: its expiry (ms since the epoch, float64 little-endian), then the value. */
const HEADER_BYTES = 8;
/** A manifest's value: the fencing token it was written under (float64), then the manifest. */
const FENCE_BYTES = 8;
/** A lock left by a process killed while holding it is taken over after this long. */
const STALE_LOCK_MS = 10_000;
const LOCK_DIR = ".lock";

const leaseValue = (lease: HeldLease) => `${lease.token}:${lease.owner}`;

/** Keys as file names: percent-encoded, or (too long for a file name) a sha256. */
function fileName(key: string): string {
  const encoded = encodeURIComponent(key);
  return encoded.length <= 200 ? encoded : `sha256-${createHash("sha256").update(key).digest("hex")}`;
}

function isMissing(error: unknown): boolean {
  return (error as NodeJS.ErrnoException)?.code === "ENOENT";
}

/**
 * The KV store in a local folder, `file:///path` (docs/kv-store.md, "Backends"): one file per key,
 * written to a temporary name and renamed into place, so a reader sees a whole value or none. Expiry
 * is recorded in each file, honoured on read and swept by `sweep`. Leases and fenced manifest writes
 * take a folder-wide lock (an exclusively created directory), so processes sharing the folder (a
 * restarted container in the same pod) never interleave them.
 */
export class FileKvStore implements KvStore {
  /** Serializes this process's locked sections; the lock directory serializes processes. */
  private locked: Promise<unknown> = Promise.resolve();
  /** Writes under way, by key: a manifest naming one of them waits for it (KvStore.set). */
  private readonly writing = new Map<string, Promise<void>>();

  private constructor(
    readonly location: string,
    private readonly root: string,
  ) {}

  static async open(url: string): Promise<FileKvStore> {
    const root = fileURLToPath(url);
    try {
      await mkdir(root, { recursive: true });
    } catch (error) {
      throw new KvStoreUnavailable(url, error);
    }
    return new FileKvStore(url, root);
  }

  async get(key: string, now = Date.now()): Promise<Buffer | null> {
    let bytes: Buffer;
    try {
      bytes = await readFile(this.path(key));
    } catch (error) {
      if (isMissing(error)) return null;
      throw this.failure(error);
    }
    if (bytes.length < HEADER_BYTES) return null; // not a store file
    const expiresAt = bytes.readDoubleLE(0);
    return expiresAt <= now ? null : bytes.subarray(HEADER_BYTES);
  }

  /** Reads into fresh buffers: a file read is no faster into reused ones here than the decode after it. */
  getMany(keys: readonly string[]): Promise<(Buffer | null)[]> {
    return Promise.all(keys.map((key) => this.get(key)));
  }

  async set(key: string, value: StoredValue, ttlMs: number): Promise<void> {
    const write = this.write(key, value, ttlMs);
    this.writing.set(key, write);
    try {
      await write;
    } finally {
      if (this.writing.get(key) === write) this.writing.delete(key);
    }
  }

  async delete(keys: readonly string[]): Promise<void> {
    for (const key of keys) {
      try {
        await unlink(this.path(key));
      } catch (error) {
        if (!isMissing(error)) throw this.failure(error);
      }
    }
  }

  acquireLease(keys: FenceKeys, owner: string, ttlMs: number, keepMs: number): Promise<LeaseAttempt> {
    return this.withLock(async () => {
      const held = (await this.get(keys.lease))?.toString("utf8");
      if (held !== undefined) {
        const sep = held.indexOf(":");
        const token = Number(held.slice(0, sep));
        const holder = held.slice(sep + 1);
        if (holder === owner) {
          await this.set(keys.lease, Buffer.from(held), ttlMs);
          return { granted: true, token };
        }
        return { granted: false, holder, expiresInMs: await this.expiresIn(keys.lease) };
      }
      const counted = Number((await this.get(keys.fence))?.toString("utf8") ?? "0");
      const token = Math.max(counted, await this.manifestFence(keys.manifest)) + 1;
      await this.set(keys.fence, Buffer.from(String(token)), keepMs);
      await this.set(keys.lease, Buffer.from(`${token}:${owner}`), ttlMs);
      return { granted: true, token };
    });
  }

  renewLease(leaseKey: string, lease: HeldLease, ttlMs: number): Promise<boolean> {
    return this.withLock(async () => {
      if (!(await this.holds(leaseKey, lease))) return false;
      await this.set(leaseKey, Buffer.from(leaseValue(lease)), ttlMs);
      return true;
    });
  }

  releaseLease(leaseKey: string, lease: HeldLease): Promise<boolean> {
    return this.withLock(async () => {
      if (!(await this.holds(leaseKey, lease))) return false;
      await this.delete([leaseKey]);
      return true;
    });
  }

  async putManifest(keys: FenceKeys, value: Buffer, lease: HeldLease, ttlMs: number, chunkKeys: readonly string[]): Promise<ManifestWrite> {
    await Promise.allSettled(chunkKeys.map((key) => this.writing.get(key)));
    return this.withLock(async () => {
      if (!(await this.holds(keys.lease, lease)) || (await this.manifestFence(keys.manifest)) > lease.token) return "stale";
      for (const key of chunkKeys) if ((await this.get(key)) === null) return "incomplete";
      const fence = Buffer.alloc(FENCE_BYTES);
      fence.writeDoubleLE(lease.token);
      await this.set(keys.manifest, [fence, value], ttlMs);
      return "written";
    });
  }

  async getManifest(manifestKey: string): Promise<Buffer | null> {
    const stored = await this.get(manifestKey);
    return stored && stored.length >= FENCE_BYTES ? stored.subarray(FENCE_BYTES) : null;
  }

  deleteManifest(keys: FenceKeys, lease: HeldLease): Promise<boolean> {
    return this.withLock(async () => {
      if (!(await this.holds(keys.lease, lease))) return false;
      await this.delete([keys.manifest]);
      return true;
    });
  }

  /** Deletes every expired file (and temporary files left by a killed writer); returns how many. */
  async sweep(now = Date.now()): Promise<number> {
    let removed = 0;
    for (const name of await this.names()) {
      const path = join(this.root, name);
      try {
        const stale = name.startsWith(".tmp-") ? (await stat(path)).mtimeMs < now - STALE_LOCK_MS : await this.expired(path, now);
        if (stale) {
          await unlink(path);
          removed++;
        }
      } catch (error) {
        if (!isMissing(error)) throw this.failure(error);
      }
    }
    return removed;
  }

  async close(): Promise<void> {
    await this.locked;
  }

  /** To a temporary name, then renamed into place: a reader sees the whole value or none. */
  private async write(key: string, value: StoredValue, ttlMs: number): Promise<void> {
    const header = Buffer.alloc(HEADER_BYTES);
    header.writeDoubleLE(Date.now() + ttlMs);
    const temporary = join(this.root, `.tmp-${randomUUID()}`);
    try {
      await writeFile(temporary, [header, ...(Buffer.isBuffer(value) ? [value] : value)]);
      await rename(temporary, this.path(key));
    } catch (error) {
      await rm(temporary, { force: true });
      throw this.failure(error);
    }
  }

  private path(key: string): string {
    return join(this.root, fileName(key));
  }

  private async names(): Promise<string[]> {
    try {
      return (await readdir(this.root)).filter((name) => name !== LOCK_DIR);
    } catch (error) {
      throw this.failure(error);
    }
  }

  private async expired(path: string, now: number): Promise<boolean> {
    const file = await open(path, "r");
    try {
      const header = Buffer.alloc(HEADER_BYTES);
      const { bytesRead } = await file.read(header, 0, HEADER_BYTES, 0);
      return bytesRead === HEADER_BYTES && header.readDoubleLE(0) <= now;
    } finally {
      await file.close();
    }
  }

  private async expiresIn(key: string): Promise<number> {
    try {
      const header = (await readFile(this.path(key))).subarray(0, HEADER_BYTES);
      return Math.max(0, Math.round(header.readDoubleLE(0) - Date.now()));
    } catch {
      return 0;
    }
  }

  private async holds(leaseKey: string, lease: HeldLease): Promise<boolean> {
    return (await this.get(leaseKey))?.toString("utf8") === leaseValue(lease);
  }

  private async manifestFence(manifestKey: string): Promise<number> {
    const stored = await this.get(manifestKey);
    return stored && stored.length >= FENCE_BYTES ? stored.readDoubleLE(0) : 0;
  }

  private withLock<T>(section: () => Promise<T>): Promise<T> {
    const run = this.locked.then(async () => {
      await this.lock();
      try {
        return await section();
      } finally {
        await rmdir(join(this.root, LOCK_DIR)).catch(() => {});
      }
    });
    this.locked = run.catch(() => {});
    return run;
  }

  /** Takes the folder lock: mkdir is atomic, so exactly one process creates the directory. */
  private async lock(): Promise<void> {
    const path = join(this.root, LOCK_DIR);
    for (;;) {
      try {
        await mkdir(path);
        return;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw this.failure(error);
      }
      const since = await stat(path).then((s) => s.mtimeMs, () => Date.now());
      if (since < Date.now() - STALE_LOCK_MS) await rmdir(path).catch(() => {});
      else await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  private failure(error: unknown): Error {
    const code = (error as NodeJS.ErrnoException)?.code;
    if (code === "ENOSPC" || code === "EDQUOT") return new KvStoreFull(this.location, error);
    return new KvStoreUnavailable(this.location, error);
  }
}
