import type { SnapshotManifest } from "../kv/store/snapshot-manifest.js";
import type { LoadedSnapshot, SnapshotStore } from "../kv/store/snapshot-store.js";
import { captureSnapshot, restoredBytes, type KvSnapshot } from "../kv/store/sequence-snapshot.js";
import type { EngineTelemetry } from "../telemetry/engine-telemetry.js";
import type { StoreReason } from "../telemetry/store-telemetry.js";
import type { Caller } from "./caller.js";
import { restoreSequence } from "./restore-sequence.js";
import type { Sequence } from "./sequence.js";
import type { SequenceAdmission } from "./sequence-admission.js";
import { SequenceLeases } from "./sequence-leases.js";
import { sequenceKey as keyOf, splitSequenceKey as splitKey, type SequenceTable } from "./sequence-table.js";

/** Where a sequence is (docs/kv-store.md, "States"). */
export type Residency = "resident" | "stored" | "both";

export interface SequenceTiersOptions {
  snapshots: SnapshotStore;
  /** How long this replica's hold on a sequence lasts unless renewed (renewed at a third of it). */
  leaseMs: number;
  /** Idle sequences are offloaded after this long; absent: never for idleness. */
  offloadIdleAfterMs?: number;
  /** Stored sequences are forgotten after this long (the store's keys expire with the same TTL). */
  ttlMs: number;
  recentQueryRows: number;
  /** Spans and metrics of transfers, and of the evictions a restored decode budget runs. */
  telemetry: EngineTelemetry;
  /** Admits a restore's memory, relieving pressure first (which may offload others). */
  admission: SequenceAdmission;
}

export interface OffloadOutcome {
  storedBytes: number;
  chunks: number;
  freedBytes: number;
}

interface StoredEntry {
  tenant: string;
  sequenceId: string;
  bytes: number;
  at: number;
}

/**
 * The engine's second tier (docs/kv-store.md): sequences move between memory and the KV store.
 * While resident, a sequence is held under this replica's lease (renewed in the background), so no
 * other replica changes it; offloading writes its snapshot under that lease, frees its memory and
 * gives the lease back, and a call naming a stored sequence takes the lease and restores it first.
 */
export class SequenceTiers {
  /** Leases of the resident sequences (and of a new one being created). */
  private readonly leases: SequenceLeases;
  /** Sequences with a snapshot this replica wrote or restored, by table key. */
  private readonly stored = new Map<string, StoredEntry>();
  /** Snapshots taken under memory pressure whose write is still under way (or failed), by table key: restored from here first. */
  private readonly parked = new Map<string, { snapshot: KvSnapshot; at: number }>();
  /** Restores under way, by table key: concurrent calls on one stored sequence wait for the same one. */
  private readonly restoring = new Map<string, Promise<void>>();
  /** Sequences written back for the admission running now (writeBack): exactly as stored, so relief may drop them. */
  private writtenBack = new Set<Sequence>();
  private readonly timers: NodeJS.Timeout[] = [];

  constructor(
    private readonly table: SequenceTable,
    private readonly options: SequenceTiersOptions,
  ) {
    this.leases = new SequenceLeases(options.snapshots, (key) => table.has(key));
    this.timers.push(setInterval(() => void this.renewLeases(), Math.max(50, options.leaseMs / 3)));
    const idleMs = options.offloadIdleAfterMs;
    if (idleMs !== undefined) this.timers.push(setInterval(() => void this.offloadIdle(idleMs), Math.max(50, Math.min(idleMs / 2, 1_000))));
    for (const timer of this.timers) timer.unref();
  }

  residency(sequence: Sequence): Residency {
    return this.stored.has(keyOf(sequence.tenant, sequence.id)) ? "both" : "resident";
  }

  storedBytes(tenant: string, sequenceId: string): number {
    return this.stored.get(keyOf(tenant, sequenceId))?.bytes ?? 0;
  }

  /**
   * The caller's sequences this replica knows to be out of memory: in the store, or offloaded under
   * pressure with the write still under way (bytes 0 until it lands).
   */
  storedOnly(tenant: string, now = Date.now()): StoredEntry[] {
    return this.outOfMemory(now).filter((entry) => entry.tenant === tenant);
  }

  storedOnlyCount(now = Date.now()): number {
    return this.outOfMemory(now).length;
  }

  private outOfMemory(now: number): StoredEntry[] {
    const stored = [...this.stored].filter(([key, entry]) => now - entry.at <= this.options.ttlMs && !this.table.has(key) && !this.parked.has(key));
    const parked = [...this.parked.keys()].map((key) => ({ ...splitKey(key), bytes: 0, at: now }));
    return [...stored.map(([, entry]) => entry), ...parked];
  }

  /**
   * Makes the named sequence resident if it is stored (restoring it), and holds it for this replica.
   * `creating`: the call may create the sequence (Prefill, a Fork's new id), so the lease is kept
   * even when nothing is stored; otherwise a sequence found nowhere leaves no lease behind.
   */
  async bringIn(caller: Caller, sequenceId: string, creating: boolean): Promise<void> {
    const key = keyOf(caller.tenant, sequenceId);
    // A restore under way first: its sequence is in the table, held, while its admission waits for a write-back.
    let pending = this.restoring.get(key);
    if (!pending) {
      if (this.table.has(key)) return;
      pending = this.restore(caller, sequenceId, key, creating).finally(() => this.restoring.delete(key));
      this.restoring.set(key, pending);
    }
    await pending;
  }

  private async restore(caller: Caller, sequenceId: string, key: string, creating: boolean): Promise<void> {
    const { snapshots } = this.options;
    await this.leases.take(key);
    let loaded: LoadedSnapshot | null = null;
    try {
      const parked = this.parked.get(key)?.snapshot;
      // Only a snapshot found is a restore (traced and counted); a new sequence finds none.
      const manifest = parked ? null : await snapshots.currentManifest(caller.tenant, sequenceId);
      loaded = manifest && (await this.load(caller.tenant, sequenceId, manifest));
      const snapshot = parked ?? loaded?.snapshot;
      if (!snapshot) {
        if (!creating) await this.leases.letGo(key);
        return;
      }
      const sequence = this.table.create(caller, sequenceId);
      // Held while its admission may wait for a write-back, so no call finds it empty; removed again if it fails.
      await this.table.withSequence(sequence, true, () =>
        this.options.admission.restore(sequence, restoredBytes(snapshot), () => restoreSequence(sequence, snapshot, this.options.recentQueryRows, this.options.telemetry)),
      );
      this.parked.delete(key);
      if (manifest) this.stored.set(key, { tenant: caller.tenant, sequenceId, bytes: manifest.bytes, at: Date.now() });
    } catch (error) {
      await this.leases.letGo(key);
      throw error;
    } finally {
      loaded?.done(); // the sequence holds copies of everything now (restoreSnapshot)
    }
  }

  private async load(tenant: string, sequenceId: string, manifest: SnapshotManifest): Promise<LoadedSnapshot | null> {
    const { chunks, bytes } = manifest;
    const read = await this.options.telemetry.observeTransfer("restore", "explicit", sequenceId, async () => ({ snapshot: await this.options.snapshots.load(tenant, sequenceId, manifest), bytes, chunks: chunks.length }));
    return read.snapshot;
  }

  /**
   * Writes the sequence's snapshot under this replica's lease, then frees its memory and gives the
   * lease back. If the write fails the sequence stays resident and usable, and the error (UNAVAILABLE,
   * RESOURCE_EXHAUSTED for a full store, ABORTED for a lost lease) is thrown.
   */
  async offload(sequence: Sequence, reason: StoreReason): Promise<OffloadOutcome> {
    const key = keyOf(sequence.tenant, sequence.id);
    sequence.claim();
    try {
      const saved = await this.write(sequence, reason);
      const freedBytes = this.table.remove(sequence);
      await this.leases.letGo(key);
      return { storedBytes: saved.bytes, chunks: saved.chunks, freedBytes };
    } finally {
      sequence.unclaim();
    }
  }

  /**
   * Memory pressure on the device path (docs/kv-store.md, "Memory pressure"): writes the snapshots
   * of `sequences` (idle now: relief chose them) to the store, holding each meanwhile, then runs
   * `admit` at once, while those written are still exactly as stored, so relief may drop them from
   * memory (offloadNow) and lose nothing. One whose write fails stays resident as it was (counted as
   * a store error), and so does one written that `admit` does not drop.
   */
  async writeBack<T>(sequences: Sequence[], admit: () => T): Promise<T> {
    for (const sequence of sequences) sequence.claim();
    const written: Sequence[] = [];
    for (const sequence of sequences) {
      try {
        await this.write(sequence, "pressure");
        written.push(sequence);
      } catch {
        // Counted by observeTransfer; the sequence stays resident.
      }
    }
    for (const sequence of sequences) sequence.unclaim(false);
    this.writtenBack = new Set(written);
    try {
      return admit();
    } finally {
      this.writtenBack = new Set(); // from now on they may change
    }
  }

  /** Whether relief may offload `sequence` now: a host cache's snapshot is taken at once, a device-resident one's only once written back. */
  canLeaveNow(sequence: Sequence): boolean {
    return !sequence.onDevice || this.writtenBack.has(sequence);
  }

  /** Writes the snapshot of `sequence` (held by the caller) under this replica's lease; the sequence stays resident. */
  private async write(sequence: Sequence, reason: StoreReason): Promise<{ bytes: number; chunks: number }> {
    const lease = await this.leases.take(keyOf(sequence.tenant, sequence.id));
    await sequence.loadEntries(); // a device-resident cache's keys and values, read back (held: nothing changes them meanwhile)
    const snapshot = captureSnapshot(sequence);
    sequence.dropReadBack(); // the snapshot holds them now
    const saved = await this.options.telemetry.observeTransfer("offload", reason, sequence.id, () => this.options.snapshots.save(lease, snapshot));
    this.stored.set(keyOf(sequence.tenant, sequence.id), { tenant: sequence.tenant, sequenceId: sequence.id, bytes: saved.bytes, at: Date.now() });
    return saved;
  }

  /**
   * Offloads under memory pressure, synchronously as the memory manager needs. A host cache: the
   * snapshot is taken and the memory freed now, the write goes on in the background; until it lands
   * (or if it fails) the snapshot stays parked here, so a call naming the sequence restores it from
   * memory: nothing is lost. A device-resident cache comes here only written back, and just leaves.
   */
  offloadNow(sequence: Sequence): void {
    const key = keyOf(sequence.tenant, sequence.id);
    if (this.writtenBack.has(sequence)) {
      // Its snapshot in the store is current (writeBack): it only leaves memory.
      this.table.remove(sequence);
      void this.leases.letGo(key);
      return;
    }
    const snapshot = captureSnapshot(sequence);
    const entry = { snapshot, at: Date.now() };
    this.parked.set(key, entry);
    this.table.remove(sequence);
    void (async () => {
      try {
        const lease = await this.leases.take(key);
        const saved = await this.options.telemetry.observeTransfer("offload", "pressure", sequence.id, () => this.options.snapshots.save(lease, snapshot));
        if (this.parked.get(key) !== entry) return; // restored meanwhile: that copy is the live one
        this.parked.delete(key);
        this.stored.set(key, { tenant: sequence.tenant, sequenceId: sequence.id, bytes: saved.bytes, at: Date.now() });
        await this.leases.letGo(key);
      } catch {
        // Counted by observeTransfer; the parked snapshot keeps the sequence.
      }
    })();
  }

  /**
   * Release's part: deletes the stored snapshot (under the lease, taking it if needed) and gives the
   * lease back; true when a snapshot was there.
   */
  async forget(caller: Caller, sequenceId: string): Promise<boolean> {
    const key = keyOf(caller.tenant, sequenceId);
    const { snapshots } = this.options;
    const wasParked = this.parked.delete(key);
    const lease = await this.leases.take(key);
    const existed = (await snapshots.currentManifest(caller.tenant, sequenceId).catch(() => null)) !== null;
    await snapshots.remove(lease);
    this.stored.delete(key);
    this.leases.drop(key);
    return existed || wasParked;
  }

  /** Offloads every resident sequence that is not busy (SIGTERM), until `deadline`; returns how many were offloaded and failed. */
  async offloadAll(deadline: number): Promise<{ offloaded: number; failed: number }> {
    let offloaded = 0;
    let failed = 0;
    for (const sequence of [...this.table.all()]) {
      if (Date.now() >= deadline) break;
      if (sequence.busy) continue;
      try {
        await this.offload(sequence, "shutdown");
        offloaded++;
      } catch {
        failed++;
      }
    }
    return { offloaded, failed };
  }

  close(): void {
    for (const timer of this.timers) clearInterval(timer);
  }

  /** Keeps the leases of sequences resident, being restored or parked, gives back the others; forgets what expired. */
  private async renewLeases(): Promise<void> {
    await this.leases.renew((key) => this.table.has(key) || this.restoring.has(key) || this.parked.has(key));
    const now = Date.now();
    // A parked snapshot whose write failed lives as long as the sequence would have.
    for (const [key, entry] of this.parked) if (now - entry.at > this.options.ttlMs) this.parked.delete(key);
    for (const [key, entry] of this.stored) if (now - entry.at > this.options.ttlMs && !this.table.has(key)) this.stored.delete(key);
  }

  private async offloadIdle(idleMs: number): Promise<void> {
    const now = Date.now();
    for (const sequence of [...this.table.all()]) {
      if (sequence.busy || now - sequence.lastUsed < idleMs) continue;
      await this.offload(sequence, "idle").catch(() => {}); // stays resident; counted as a store error
    }
  }

}
