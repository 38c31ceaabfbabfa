import { FileKvStore } from "./file-kv-store.js";
import type { KvStore } from "./kv-store.js";
import { isClusterUrl } from "./redis-cluster-url.js";
import { RedisKvStore } from "./redis-kv-store.js";

/**
 * Opens the store a --kv-store URL names: `redis://[user:password@]host:port[/db]`, `rediss://...`
 * (TLS; `caFile` for --kv-store-ca) for Redis or Valkey, `redis+cluster://host:port[,host:port...]`
 * (or `rediss+cluster://`) for a Redis Cluster, or `file:///path` for a local folder.
 */
export async function openKvStore(url: string, options: { caFile?: string } = {}): Promise<KvStore> {
  if (isClusterUrl(url)) return RedisKvStore.openCluster(url, options);
  let scheme: string;
  try {
    scheme = new URL(url).protocol;
  } catch {
    throw new Error(`--kv-store '${url}' is not a URL: use redis://host:port, rediss://host:port, redis+cluster://host:port,... or file:///path`);
  }
  if (scheme === "redis:" || scheme === "rediss:") return RedisKvStore.open(url, options);
  if (scheme === "file:") return FileKvStore.open(url);
  throw new Error(`--kv-store scheme '${scheme}' is not supported: use redis://, rediss://, redis+cluster://, rediss+cluster:// or file://`);
}
