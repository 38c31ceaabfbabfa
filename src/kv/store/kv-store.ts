/**
 * The few operations the snapshot store needs from a key-value backend (Redis/Valkey, or a local
 * folder), each atomic on its own (docs/kv-store.md, "Backends"). Failures are typed
 * (store-errors.ts): KvStoreUnavailable when the backend cannot be reached, KvStoreFull when it refuses
 * writes for lack of room.
 */

/** Where a value read by getMany goes: a buffer of at least `bytes`, or null for one of its own. */
export type ValueBuffers = (bytes: number) => Buffer | null;

/** The keys that fence one sequence: its lease, its fencing counter and its manifest. */
export interface FenceKeys {
  lease: string;
  fence: string;
  manifest: string;
}

/** A lease as its holder knows it: who, and the fencing token it was granted. */
export interface HeldLease {
  owner: string;
  token: number;
}

export type LeaseAttempt = { granted: true; token: number } | { granted: false; holder: string; expiresInMs: number };

/** What putManifest did: wrote it; refused for the lease (lost, or a newer holder wrote); refused for a chunk not there. */
export type ManifestWrite = "written" | "stale" | "incomplete";

/** A value as one buffer, or as the parts it is made of (written gathered, in order, without joining them where the backend can). */
export type StoredValue = Buffer | readonly Buffer[];

export interface KvStore {
  /** Where the store is, for messages: the URL without credentials. */
  readonly location: string;
  get(key: string): Promise<Buffer | null>;
  /**
   * Reads `keys` at once (null where one is missing). A backend that can copies each value into a
   * buffer from `buffers` (reused memory: docs/kv-store.md, "Benchmarks"); the others ignore it.
   */
  getMany(keys: readonly string[], buffers: ValueBuffers): Promise<(Buffer | null)[]>;
  /**
   * Writes `value` under `key`, expiring after `ttlMs`. The value's memory is read until the promise
   * settles. A later putManifest that names the key sees this write once it has succeeded, without
   * waiting for it (Redis: one connection answers in order; a folder: the manifest waits for it).
   */
  set(key: string, value: StoredValue, ttlMs: number): Promise<void>;
  delete(keys: readonly string[]): Promise<void>;
  /**
   * Takes the lease for `owner` for `ttlMs` unless another owner holds it. A new grant gets a
   * fencing token greater than every token granted before and than the manifest's (so it survives the
   * counter expiring); the owner that already holds it gets its token back and the lease extended.
   * The counter is kept for `keepMs` (the sequence TTL).
   */
  acquireLease(keys: FenceKeys, owner: string, ttlMs: number, keepMs: number): Promise<LeaseAttempt>;
  /** Extends a lease still held as `lease`; false when it is not (expired, or taken by a newer token). */
  renewLease(leaseKey: string, lease: HeldLease, ttlMs: number): Promise<boolean>;
  /** Gives a lease still held as `lease` back; false when it was not held. */
  releaseLease(leaseKey: string, lease: HeldLease): Promise<boolean>;
  /**
   * Writes the manifest, expiring after `ttlMs`, only while `lease` is held, no manifest written
   * under a greater token exists, and every key of `chunkKeys` exists (sets of them issued before
   * this call count: a save sends its manifest without waiting for its chunks' replies).
   */
  putManifest(keys: FenceKeys, value: Buffer, lease: HeldLease, ttlMs: number, chunkKeys: readonly string[]): Promise<ManifestWrite>;
  getManifest(manifestKey: string): Promise<Buffer | null>;
  /** Deletes the manifest only while `lease` is held; false (nothing deleted) otherwise. */
  deleteManifest(keys: FenceKeys, lease: HeldLease): Promise<boolean>;
  close(): Promise<void>;
}
