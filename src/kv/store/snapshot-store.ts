import { randomUUID } from "node:crypto";
import { setImmediate } from "node:timers/promises";
import type { KvStore } from "./kv-store.js";
import type { KvSnapshot } from "./sequence-snapshot.js";
import { ChunkBufferPool } from "./chunk-buffer-pool.js";
import { decodeSnapshot, encodeSnapshotChunks, SNAPSHOT_FORMAT_VERSION } from "./snapshot-codec.js";
import { type ChunkEntry, decodeManifest, DEFAULT_CHUNK_BYTES, describeChunk, encodeManifest, verifyChunk, type SnapshotManifest } from "./snapshot-manifest.js";
import { SequenceKeys } from "./store-keys.js";
import { KvStoreUnavailable, SequenceHeldElsewhere, StaleLease } from "./store-errors.js";

export interface SnapshotStoreOptions {
  store: KvStore;
  /** Namespaces every key (--kv-store-prefix). */
  prefix: string;
  /** modelFingerprint(...) of the model this server runs. */
  model: string;
  /** This replica's name, as leases record their holder (a router can send calls there). */
  replica: string;
  /** How long a lease lasts unless renewed: a dead replica's hold ends after it. */
  leaseMs: number;
  /** How long a stored snapshot is kept (the sequence TTL). */
  ttlMs: number;
  chunkBytes?: number;
}

/** The right to mutate and write one sequence, with the fencing token every write carries. */
export interface SequenceLease {
  tenant: string;
  sequenceId: string;
  keys: SequenceKeys;
  owner: string;
  token: number;
}

export interface SavedSnapshot {
  snapshotId: string;
  bytes: number;
  chunks: number;
}

/**
 * A snapshot read from the store. Its arrays may be views of the buffers the chunks were read into
 * (no copy, no fresh memory: docs/kv-store.md, "Store throughput"): `done` gives those buffers back
 * for the next load once nothing reads the arrays any more. Forgetting it only costs their reuse.
 */
export interface LoadedSnapshot {
  readonly snapshot: KvSnapshot;
  done(): void;
}

/**
 * A load asks for at most this many bytes at once: with more GET replies in flight (three or four
 * 4 MiB chunks), redis-server took 40-55 ms instead of 5 for the same 12.9 MiB (docs/kv-store.md, "Benchmarks").
 */
const READ_ROUND_BYTES = 8 * 2 ** 20;

/** The manifest's chunk indices in rounds of at most READ_ROUND_BYTES (a larger chunk alone). */
function readRounds(manifest: SnapshotManifest): number[][] {
  const rounds: number[][] = [];
  let roundBytes = Infinity;
  manifest.chunks.forEach(({ bytes }, i) => {
    if (roundBytes + bytes > READ_ROUND_BYTES) rounds.push([]), (roundBytes = 0);
    rounds[rounds.length - 1].push(i);
    roundBytes += bytes;
  });
  return rounds;
}

/**
 * Snapshots of sequences in a KvStore, and the leases that say which replica may change them
 * (docs/kv-store.md): chunks first, each with its checksum, then the manifest, written only under
 * the current lease and never over a manifest of a newer one.
 */
export class SnapshotStore {
  /** Loads read chunks into these: four, for a 12.9 MiB snapshot of the benchmark model's shape (docs/kv-store.md, "Benchmarks"). */
  private readonly chunkBuffers: ChunkBufferPool;

  constructor(private readonly options: SnapshotStoreOptions) {
    this.chunkBuffers = new ChunkBufferPool(options.chunkBytes ?? DEFAULT_CHUNK_BYTES, 4);
  }

  keys(tenant: string, sequenceId: string): SequenceKeys {
    return new SequenceKeys(this.options.prefix, this.options.model, tenant, sequenceId);
  }

  /** Takes the sequence for this replica; SequenceHeldElsewhere names the replica that holds it. */
  async acquire(tenant: string, sequenceId: string): Promise<SequenceLease> {
    const { store, replica, leaseMs, ttlMs } = this.options;
    const keys = this.keys(tenant, sequenceId);
    const attempt = await store.acquireLease(keys, replica, leaseMs, ttlMs);
    if (!attempt.granted) throw new SequenceHeldElsewhere(`${tenant ? `${tenant}/` : ""}${sequenceId}`, attempt.holder, attempt.expiresInMs);
    return { tenant, sequenceId, keys, owner: replica, token: attempt.token };
  }

  /** Extends the lease; StaleLease when it has been lost (the replica must stop changing the sequence). */
  async renew(lease: SequenceLease): Promise<void> {
    if (!(await this.options.store.renewLease(lease.keys.lease, lease, this.options.leaseMs))) throw this.stale(lease);
  }

  async release(lease: SequenceLease): Promise<boolean> {
    return this.options.store.releaseLease(lease.keys.lease, lease);
  }

  /**
   * Writes `snapshot` as the sequence's current one. A failure part-way leaves the previous snapshot
   * current (its chunks are untouched: each snapshot has its own chunk keys); StaleLease when the lease
   * is no longer held, or a newer holder has written since. The snapshot's arrays are read until it settles.
   */
  async save(lease: SequenceLease, snapshot: KvSnapshot): Promise<SavedSnapshot> {
    const { store, ttlMs, model } = this.options;
    const { keys } = lease;
    const previousLookup = this.currentManifest(lease.tenant, lease.sequenceId).catch(() => null);
    const snapshotId = `${lease.token}-${randomUUID()}`;
    // Views of the snapshot's arrays, sent gathered: no copy (docs/kv-store.md, "Store throughput").
    const chunks = encodeSnapshotChunks(snapshot, this.chunkBuffers.chunkBytes);
    const chunkKeys = chunks.map((_, i) => keys.chunk(snapshotId, i));
    const writes: Promise<void>[] = [];
    const described: ChunkEntry[] = [];
    for (const [i, parts] of chunks.entries()) {
      const write = store.set(chunkKeys[i], parts, ttlMs);
      write.catch(() => {}); // seen by Promise.all below; not an unhandled rejection while the loop still runs
      writes.push(write);
      // Its checksum while the server takes it in; then a turn of the event loop, where Node writes on as
      // the server reads (a save that checksummed every chunk first left the server waiting: 5.7 against 5.3 ms).
      described.push(describeChunk(parts));
      if (i + 1 < chunks.length) await setImmediate();
    }
    const manifest: SnapshotManifest = {
      format: "kvwarden-kv-snapshot",
      version: SNAPSHOT_FORMAT_VERSION,
      model,
      tenant: lease.tenant,
      sequenceId: lease.sequenceId,
      snapshotId,
      fence: lease.token,
      bytes: described.reduce((sum, chunk) => sum + chunk.bytes, 0),
      chunks: described,
      writtenAt: new Date().toISOString(),
    };
    // Sent behind the chunks, not after their replies: the store writes it only if they are all there.
    const put = store.putManifest(keys, encodeManifest(manifest), lease, ttlMs, chunkKeys);
    const [written, outcome] = await Promise.allSettled([Promise.all(writes), put]);
    // A failed write or manifest may still have been applied (a connection lost before the reply): nothing is deleted then.
    if (written.status === "rejected") throw written.reason;
    if (outcome.status === "rejected") throw outcome.reason;
    if (outcome.value !== "written") {
      await store.delete(chunkKeys).catch(() => {});
      throw outcome.value === "stale" ? this.stale(lease) : new KvStoreUnavailable(store.location, "a chunk was gone before its manifest was written");
    }
    const previous = await previousLookup;
    // Not waited for: the new snapshot is current already, and old chunks expire in any case. (A store
    // that reads manifests on another connection than it writes them may have read the new one.)
    if (previous && previous.snapshotId !== snapshotId) store.delete(previous.chunks.map((_, i) => keys.chunk(previous.snapshotId, i))).catch(() => {});
    return { snapshotId, bytes: manifest.bytes, chunks: chunks.length };
  }

  /**
   * The sequence's current snapshot, checked chunk by chunk; null when none is stored (or it expired).
   * `current`: its manifest, when the caller has just read it (currentManifest), not read again.
   */
  async load(tenant: string, sequenceId: string, current?: SnapshotManifest): Promise<LoadedSnapshot | null> {
    const manifest = current ?? (await this.currentManifest(tenant, sequenceId));
    if (!manifest) return null;
    const keys = this.keys(tenant, sequenceId);
    const pooled: Buffer[] = [];
    const chunkBuffer = (bytes: number) => (bytes <= this.chunkBuffers.chunkBytes ? pooled[pooled.push(this.chunkBuffers.take()) - 1] : null);
    try {
      const chunks: (Buffer | null)[] = [];
      for (const round of readRounds(manifest)) chunks.push(...(await this.options.store.getMany(round.map((i) => keys.chunk(manifest.snapshotId, i)), chunkBuffer)));
      // Decoded from the chunks as received, its arrays lent from them: copies would cost fresh memory and its collection (docs/kv-store.md, "Benchmarks").
      const snapshot = decodeSnapshot(
        chunks.map((chunk, i) => verifyChunk(manifest, i, chunk)),
        { lend: true },
      );
      let given = false;
      const done = () => {
        if (!given) this.chunkBuffers.give(pooled);
        given = true;
      };
      return { snapshot, done };
    } catch (error) {
      this.chunkBuffers.give(pooled);
      throw error;
    }
  }

  /** The manifest of the sequence's current snapshot, or null. */
  async currentManifest(tenant: string, sequenceId: string): Promise<SnapshotManifest | null> {
    const bytes = await this.options.store.getManifest(this.keys(tenant, sequenceId).manifest);
    return bytes && decodeManifest(bytes, { model: this.options.model, tenant, sequenceId });
  }

  /** Deletes the sequence's snapshot (Release); StaleLease when the lease is no longer held. */
  async remove(lease: SequenceLease): Promise<void> {
    const current = await this.currentManifest(lease.tenant, lease.sequenceId).catch(() => null);
    if (!(await this.options.store.deleteManifest(lease.keys, lease))) throw this.stale(lease);
    if (current) await this.options.store.delete(current.chunks.map((_, i) => lease.keys.chunk(current.snapshotId, i)));
  }

  private stale(lease: SequenceLease): StaleLease {
    return new StaleLease(`${lease.tenant ? `${lease.tenant}/` : ""}${lease.sequenceId}`, lease.token);
  }
}
