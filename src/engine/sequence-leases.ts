import type { SequenceLease, SnapshotStore } from "../kv/store/snapshot-store.js";
import { splitSequenceKey } from "./sequence-table.js";

/**
 * The leases this replica holds on sequences, by table key (docs/kv-store.md, "Leases and fencing"):
 * taken when a sequence becomes resident here, renewed in the background, given back when it leaves.
 */
export class SequenceLeases {
  private readonly held = new Map<string, SequenceLease>();

  constructor(
    private readonly snapshots: SnapshotStore,
    /** Whether the sequence under `key` is resident here (its lease is then kept). */
    private readonly resident: (key: string) => boolean,
  ) {}

  /** The lease on the sequence, taken if this replica does not hold it; SequenceHeldElsewhere names the holder. */
  async take(key: string): Promise<SequenceLease> {
    const held = this.held.get(key);
    if (held) return held;
    const { tenant, sequenceId } = splitSequenceKey(key);
    const lease = await this.snapshots.acquire(tenant, sequenceId);
    this.held.set(key, lease);
    return lease;
  }

  /** Gives the lease back unless the sequence is resident here again; a store that is down lets it expire. */
  async letGo(key: string): Promise<void> {
    const lease = this.held.get(key);
    if (!lease || this.resident(key)) return;
    this.held.delete(key);
    await this.snapshots.release(lease).catch(() => {});
  }

  /** Release's end: the sequence leaves the table right after, so the lease is given back regardless. */
  drop(key: string): void {
    const lease = this.held.get(key);
    this.held.delete(key);
    if (lease) void this.snapshots.release(lease).catch(() => {});
  }

  /** Renews the leases `keep` says are in use; gives back the others (sequences released, expired, or never created). */
  async renew(keep: (key: string) => boolean): Promise<void> {
    for (const [key, lease] of [...this.held]) {
      if (!keep(key)) {
        await this.letGo(key);
        continue;
      }
      await this.snapshots.renew(lease).catch(() => {
        // Unreachable: retried at the next round; lost (StaleLease): the next write is refused, fenced.
      });
    }
  }
}
