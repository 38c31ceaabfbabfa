import type { KvStore } from "../../../../src/kv/store/kv-store.js";
import type { SnapshotStoreOptions } from "../../../../src/kv/store/snapshot-store.js";

/** The snapshot store settings the store tests share: one model and replica, long leases, 8 KiB chunks so a snapshot spans several. */
export function testSnapshotOptions(store: KvStore, overrides: Partial<SnapshotStoreOptions> = {}): SnapshotStoreOptions {
  return { store, prefix: "kvw", model: "model-a", replica: "replica-a", leaseMs: 60_000, ttlMs: 600_000, chunkBytes: 8192, ...overrides };
}
