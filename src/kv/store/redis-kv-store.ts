import { readFile } from "node:fs/promises";
import { createClient, createCluster, ErrorReply, RESP_TYPES } from "redis";
import type { FenceKeys, HeldLease, KvStore, LeaseAttempt, ManifestWrite, StoredValue, ValueBuffers } from "./kv-store.js";
import { RedisChunkConnection } from "./redis-chunk-connection.js";
import { parseClusterUrl } from "./redis-cluster-url.js";
import { KvStoreFull, KvStoreUnavailable } from "./store-errors.js";
import { storeLocation } from "./store-location.js";

/*
 * The scripts that make leases and fenced writes atomic (docs/kv-store.md, "Leases and fencing").
 * A lease's value is "<token>:<owner>". The manifest is a hash: f = the fencing token it was written
 * under, v = the manifest itself.
 */
const ACQUIRE = `
local held = redis.call('GET', KEYS[1])
if held then
  local sep = string.find(held, ':', 1, true)
  local owner = string.sub(held, sep + 1)
  if owner == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {1, tonumber(string.sub(held, 1, sep - 1))}
  end
  return {0, owner, redis.call('PTTL', KEYS[1])}
end
local token = redis.call('INCR', KEYS[2])
local written = tonumber(redis.call('HGET', KEYS[3], 'f') or '0')
if token <= written then
  token = written + 1
  redis.call('SET', KEYS[2], token)
end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], token .. ':' .. ARGV[1], 'PX', ARGV[2])
return {1, token}`;

const RENEW = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`;

const RELEASE = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1`;

// KEYS[3...]: the snapshot's chunks, which must all be there (sent before it, on the same connection).
const PUT_MANIFEST = `
if redis.call('GET', KEYS[1]) ~= ARGV[3] then return 0 end
local written = tonumber(redis.call('HGET', KEYS[2], 'f') or '0')
if written > tonumber(ARGV[2]) then return 0 end
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then return -1 end
end
redis.call('HSET', KEYS[2], 'f', ARGV[2], 'v', ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1`;

const DELETE_MANIFEST = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
return 1`;

const leaseValue = (lease: HeldLease) => `${lease.token}:${lease.owner}`;
const MANIFEST_WRITES: Record<number, ManifestWrite> = { 1: "written", 0: "stale", [-1]: "incomplete" };

export interface RedisStoreOptions {
  /** PEM file of the CA that signed the server's certificate (rediss:// only). */
  caFile?: string;
}

/** The commands the store sends: what a node-redis client and a cluster client both offer, values as Buffers. */
interface RedisCommands {
  get(key: string): Promise<Buffer | null>;
  set(key: string, value: Buffer, options: { expiration: { type: "PX"; value: number } }): Promise<unknown>;
  del(keys: string[]): Promise<number>;
  hGet(key: string, field: string): Promise<Buffer | null>;
  eval(script: string, options: { keys: string[]; arguments: (string | Buffer)[] }): Promise<unknown>;
}

type ReconnectStrategy = (retries: number, cause: Error) => number | Error;

/**
 * The KV store on Redis or Valkey (node-redis v5, RESP3): one server, `redis://[user:password@]host:port[/db]`
 * or `rediss://` (TLS), or a Redis Cluster, `redis+cluster://[user:password@]host:port[,host:port...]`
 * (docs/kv-store.md, "Redis Cluster"; all keys of one sequence share a hash tag, so its scripts and
 * deletes stay in one slot). Values travel as Buffers (RESP type mapping). Commands fail at once while
 * the connection is down (no offline queue), so a caller learns of it instead of waiting.
 *
 * On plain TCP, what moves a snapshot (its chunks, its manifest both ways, the deletes of old chunks)
 * goes over a connection of the store's own (RedisChunkConnection: chunks gathered from the
 * snapshot's arrays, read into reused buffers), in one pipeline so the manifest follows its chunks in
 * order; leases and the rest go through node-redis. TLS and Cluster stores send everything through
 * node-redis.
 */
export class RedisKvStore implements KvStore {
  private constructor(
    readonly location: string,
    private readonly client: RedisCommands,
    private readonly disconnect: () => void,
    /** Moves snapshots (plain TCP only). */
    private readonly chunks: RedisChunkConnection | null = null,
  ) {}

  static async open(url: string, options: RedisStoreOptions = {}): Promise<RedisKvStore> {
    const location = storeLocation(url);
    const ca = options.caFile ? await readFile(options.caFile) : undefined;
    const connection = failFastUntilConnected();
    const client = binaryClient(url, ca, connection.reconnectStrategy);
    // Errors also reach the command that met them; without a listener the client's 'error' event would crash the process.
    client.on("error", () => {});
    try {
      await client.connect();
    } catch (error) {
      throw new KvStoreUnavailable(location, error);
    }
    connection.connected = true;
    const chunks = url.startsWith("redis:") ? new RedisChunkConnection(new URL(url)) : null;
    return new RedisKvStore(location, client, () => client.isOpen && client.destroy(), chunks);
  }

  /** A Redis Cluster: the nodes in the URL are where the client discovers the others from. */
  static async openCluster(url: string, options: RedisStoreOptions = {}): Promise<RedisKvStore> {
    const { tls, username, password, nodes, location } = parseClusterUrl(url);
    const ca = options.caFile ? await readFile(options.caFile) : undefined;
    const connection = failFastUntilConnected();
    const cluster = createCluster({
      rootNodes: nodes.map(({ host, port }) => ({ socket: { host, port } })),
      defaults: {
        username,
        password,
        disableOfflineQueue: true,
        socket: tls ? { tls: true, ca, reconnectStrategy: connection.reconnectStrategy, connectTimeout: 5000 } : { reconnectStrategy: connection.reconnectStrategy, connectTimeout: 5000 },
      },
    }).withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
    cluster.on("error", () => {});
    try {
      await cluster.connect();
    } catch (error) {
      cluster.destroy();
      throw new KvStoreUnavailable(location, error);
    }
    connection.connected = true;
    return new RedisKvStore(location, cluster, () => cluster.destroy());
  }

  get(key: string): Promise<Buffer | null> {
    return this.call(() => this.client.get(key));
  }

  getMany(keys: readonly string[], buffers: ValueBuffers): Promise<(Buffer | null)[]> {
    const chunks = this.chunks;
    return this.call(() => (chunks ? chunks.getMany(keys, buffers) : Promise.all(keys.map((key) => this.client.get(key)))));
  }

  async set(key: string, value: StoredValue, ttlMs: number): Promise<void> {
    const chunks = this.chunks;
    await this.call(() =>
      chunks
        ? chunks.command(["SET", key, value, "PX", String(ttlMs)])
        : this.client.set(key, Buffer.isBuffer(value) ? value : Buffer.concat(value), { expiration: { type: "PX", value: ttlMs } }),
    );
  }

  async delete(keys: readonly string[]): Promise<void> {
    const chunks = this.chunks;
    if (keys.length > 0) await this.call(() => (chunks ? chunks.command(["DEL", ...keys]) : this.client.del([...keys])));
  }

  async acquireLease(keys: FenceKeys, owner: string, ttlMs: number, keepMs: number): Promise<LeaseAttempt> {
    const reply = (await this.script(ACQUIRE, [keys.lease, keys.fence, keys.manifest], [owner, String(ttlMs), String(keepMs)])) as [number, number | Buffer, number?];
    if (reply[0] === 1) return { granted: true, token: Number(reply[1]) };
    return { granted: false, holder: String(reply[1]), expiresInMs: Math.max(0, Number(reply[2])) };
  }

  async renewLease(leaseKey: string, lease: HeldLease, ttlMs: number): Promise<boolean> {
    return (await this.script(RENEW, [leaseKey], [leaseValue(lease), String(ttlMs)])) === 1;
  }

  async releaseLease(leaseKey: string, lease: HeldLease): Promise<boolean> {
    return (await this.script(RELEASE, [leaseKey], [leaseValue(lease)])) === 1;
  }

  async putManifest(keys: FenceKeys, value: Buffer, lease: HeldLease, ttlMs: number, chunkKeys: readonly string[]): Promise<ManifestWrite> {
    const scriptKeys = [keys.lease, keys.manifest, ...chunkKeys];
    const args = [value, String(lease.token), leaseValue(lease), String(ttlMs)];
    const chunks = this.chunks;
    // Behind the chunks on their connection, so that they are stored by the time it runs.
    const reply = chunks ? await this.call(() => chunks.command(["EVAL", PUT_MANIFEST, String(scriptKeys.length), ...scriptKeys, ...args])) : await this.script(PUT_MANIFEST, scriptKeys, args);
    return MANIFEST_WRITES[Number(reply)];
  }

  getManifest(manifestKey: string): Promise<Buffer | null> {
    const chunks = this.chunks;
    return this.call(async () => (chunks ? ((await chunks.command(["HGET", manifestKey, "v"])) as Buffer | null) : this.client.hGet(manifestKey, "v")));
  }

  async deleteManifest(keys: FenceKeys, lease: HeldLease): Promise<boolean> {
    return (await this.script(DELETE_MANIFEST, [keys.lease, keys.manifest], [leaseValue(lease)])) === 1;
  }

  async close(): Promise<void> {
    this.chunks?.close();
    this.disconnect();
  }

  private script(source: string, keys: string[], args: (string | Buffer)[]): Promise<unknown> {
    return this.call(() => this.client.eval(source, { keys, arguments: args }));
  }

  /** Runs one command, turning the client's failures into the store's typed errors. */
  private async call<T>(command: () => Promise<T>): Promise<T> {
    try {
      return await command();
    } catch (error) {
      if (error instanceof ErrorReply) {
        // maxmemory with noeviction: "OOM command not allowed when used memory > 'maxmemory'".
        if (/\bOOM\b/.test(error.message)) throw new KvStoreFull(this.location, error);
        // A server that cannot take the command now (a read-only replica, loading its data, a busy script, a cluster without a primary).
        if (/^(READONLY|LOADING|BUSY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN)\b/.test(error.message)) throw new KvStoreUnavailable(this.location, error);
        throw error;
      }
      throw new KvStoreUnavailable(this.location, error);
    }
  }
}

/** A connection that gives up at once while it has never connected (a wrong address fails fast), and retries with backoff after. */
function failFastUntilConnected(): { connected: boolean; reconnectStrategy: ReconnectStrategy } {
  const connection = {
    connected: false,
    reconnectStrategy: (retries: number, cause: Error) => (connection.connected ? Math.min(50 * 2 ** retries, 2000) : cause),
  };
  return connection;
}

function binaryClient(url: string, ca: Buffer | undefined, reconnectStrategy: ReconnectStrategy) {
  const tls = url.startsWith("rediss:");
  return createClient({
    url,
    disableOfflineQueue: true,
    socket: tls ? { tls: true, ca, reconnectStrategy, connectTimeout: 5000 } : { reconnectStrategy, connectTimeout: 5000 },
  }).withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
}
