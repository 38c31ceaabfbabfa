/**
 * A replica in a process of its own: takes sequence "killed" in the file store at argv[2] as replica
 * argv[3], writes its snapshot, says "written" and waits, holding the lease, to be killed.
 */
import { FileKvStore } from "../../../../src/kv/store/file-kv-store.js";
import { SnapshotStore } from "../../../../src/kv/store/snapshot-store.js";
import { capturedSnapshot } from "./captured-snapshot.js";

const [url, replica, leaseMs] = process.argv.slice(2);
const store = await FileKvStore.open(url);
const snapshots = new SnapshotStore({ store, prefix: "kvw", model: "model-a", replica, leaseMs: Number(leaseMs), ttlMs: 600_000, chunkBytes: 8192 });
const snapshot = await capturedSnapshot();
const lease = await snapshots.acquire("tenant-1", "killed");
await snapshots.save(lease, snapshot);
process.stdout.write("written\n");
setInterval(() => {}, 60_000);
