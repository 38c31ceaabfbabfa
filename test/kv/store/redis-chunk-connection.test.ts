import { createClient, ErrorReply, RESP_TYPES } from "redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RedisChunkConnection } from "../../../src/kv/store/redis-chunk-connection.js";
import { RedisKvStore } from "../../../src/kv/store/redis-kv-store.js";
import { KvStoreUnavailable } from "../../../src/kv/store/store-errors.js";
import { startRedis, type RedisProcess } from "./support/redis-server.js";

// The store's own connection for snapshot chunks (docs/kv-store.md, "Store throughput") against a real
// redis-server: what it reads and writes must equal what node-redis reads and writes, whatever the
// value and the handshake.

const MiB = 2 ** 20;

/** Bytes that are not text: every byte value, and \r\n inside, so a parser that looks for line ends in values fails. */
function binaryValue(bytes: number, seed: number): Buffer {
  const value = Buffer.allocUnsafe(bytes);
  for (let i = 0; i < bytes; i++) value[i] = (i * 31 + seed * 17 + (i >> 8)) & 0xff;
  for (let i = 0; i + 1 < bytes; i += 997) value.write("\r\n", i, "latin1");
  return value;
}

describe("the chunk connection on a real redis-server", () => {
  let redis: RedisProcess;
  let client: ReturnType<typeof createClient>;
  const noBuffers = () => null;

  beforeAll(async () => {
    redis = await startRedis();
    client = createClient({ url: redis.url });
    client.on("error", () => {}); // the test that closes every connection makes it reconnect
    await client.connect();
  }, 60_000);
  afterAll(async () => {
    client?.destroy();
    await redis?.stop();
  });

  const nodeRedisGet = (key: string) => client.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer }).get(key);

  it("reads values of every size byte for byte as node-redis does, into the buffers it is given where they fit", async () => {
    const sizes = [0, 1, 2, 65_535, 65_537, 4 * MiB, 4 * MiB + 3, 9 * MiB + 5];
    const keys = sizes.map((bytes) => `value:${bytes}`);
    await Promise.all(sizes.map((bytes, i) => client.set(keys[i], binaryValue(bytes, i))));
    const given = Buffer.alloc(4 * MiB);
    const reader = new RedisChunkConnection(new URL(redis.url));
    const values = await reader.getMany(keys, (bytes) => (bytes === 4 * MiB ? given : null));
    reader.close();
    for (const [i, key] of keys.entries()) expect(values[i]!.equals((await nodeRedisGet(key))!), key).toBe(true);
    expect(values[sizes.indexOf(4 * MiB)]!.buffer).toBe(given.buffer);
    // A value larger than the buffer offered gets one of its own rather than being cut.
    const reader2 = new RedisChunkConnection(new URL(redis.url));
    const [large] = await reader2.getMany(["value:9437189"], () => given);
    reader2.close();
    expect(large!.length).toBe(9 * MiB + 5);
    expect(large!.equals(binaryValue(9 * MiB + 5, sizes.length - 1))).toBe(true);
  });

  it("answers null for a missing key and keeps replies in order across concurrent pipelines", async () => {
    await Promise.all(Array.from({ length: 40 }, (_, i) => client.set(`ordered:${i}`, binaryValue(1000 + i * 5000, i))));
    const reader = new RedisChunkConnection(new URL(redis.url));
    const batches = Array.from({ length: 8 }, (_, batch) => [`ordered:${batch * 5}`, "missing", ...[1, 2, 3, 4].map((j) => `ordered:${batch * 5 + j}`)]);
    const results = await Promise.all(batches.map((keys) => reader.getMany(keys, noBuffers)));
    reader.close();
    for (const [batch, keys] of batches.entries()) {
      expect(results[batch][1]).toBeNull();
      for (const [i, key] of keys.entries()) if (key !== "missing") expect(results[batch][i]!.equals(binaryValue(1000 + Number(key.split(":")[1]) * 5000, Number(key.split(":")[1]))), key).toBe(true);
    }
  });

  it("rejects an error reply as node-redis does and goes on reading on the same connection", async () => {
    await client.hSet("a-hash", "field", "value");
    await client.set("after", "still here");
    const reader = new RedisChunkConnection(new URL(redis.url));
    const failed = await reader.getMany(["a-hash", "after"], noBuffers).catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(ErrorReply);
    expect((failed as Error).message).toMatch(/^WRONGTYPE/);
    expect((await reader.getMany(["after"], noBuffers))[0]!.toString()).toBe("still here");
    reader.close();
  });

  it("writes a value gathered from its parts byte for byte, and answers integers, statuses and nulls", async () => {
    const whole = binaryValue(4 * MiB + 7, 3);
    const cuts = [0, 1, 65_536, 65_536, 3 * MiB, whole.length]; // an empty part among them
    const parts = cuts.slice(1).map((end, i) => whole.subarray(cuts[i], end));
    const connection = new RedisChunkConnection(new URL(redis.url));
    expect(await connection.command(["SET", "gathered", parts, "PX", "60000"])).toBeNull(); // +OK
    expect((await nodeRedisGet("gathered"))!.equals(whole)).toBe(true);
    expect(await connection.command(["EXISTS", "gathered", "missing"])).toBe(1);
    expect(await connection.command(["GET", "missing"])).toBeNull();
    expect(await connection.command(["DEL", "gathered"])).toBe(1);
    connection.close();
  });

  it("sends commands in the order they are called, so a script sees the writes called before it without waiting for them", async () => {
    const connection = new RedisChunkConnection(new URL(redis.url)); // not yet connected: Node holds the writes
    const keys = ["first", "second", "third"].map((name) => `in-order:${name}`);
    const writes = keys.map((key, i) => connection.command(["SET", key, [binaryValue(2 * MiB, i), Buffer.from("tail")]]));
    const counted = connection.command(["EVAL", "return redis.call('EXISTS', unpack(KEYS))", String(keys.length), ...keys]);
    expect(await counted).toBe(3);
    await Promise.all(writes);
    connection.close();
  });

  it("reopens its connection on the next read after the server closed it", async () => {
    await client.set("survivor", "yes");
    const reader = new RedisChunkConnection(new URL(redis.url));
    expect((await reader.getMany(["survivor"], noBuffers))[0]!.toString()).toBe("yes");
    expect(Number(await redis.cli("CLIENT", "KILL", "TYPE", "normal"))).toBeGreaterThanOrEqual(1);
    await client.ping(); // node-redis reconnects on its own; by its answer the reader has seen its own connection close
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await reader.getMany(["survivor"], noBuffers)).toEqual([Buffer.from("yes")]);
    reader.close();
  });
});

describe("the chunk connection's handshake", () => {
  let redis: RedisProcess;
  beforeAll(async () => {
    redis = await startRedis(["--requirepass", "secret word"]);
    await redis.cli("-a", "secret word", "--no-auth-warning", "ACL", "SETUSER", "reader", "on", ">reader pass", "~*", "+@all");
    await redis.cli("-a", "secret word", "--no-auth-warning", "-n", "3", "SET", "in-db-3", "three");
    await redis.cli("-a", "secret word", "--no-auth-warning", "SET", "in-db-0", "zero");
  }, 60_000);
  afterAll(() => redis?.stop());

  const url = (auth: string, db = "") => new URL(`redis://${auth}@127.0.0.1:${redis.port}${db}`);

  it("authenticates with a password, or an ACL user and password, and selects the database of the URL", async () => {
    for (const reader of [new RedisChunkConnection(url(":secret%20word", "/3")), new RedisChunkConnection(url("reader:reader%20pass", "/3"))]) {
      expect((await reader.getMany(["in-db-3", "in-db-0"], () => null)).map((value) => value?.toString() ?? null)).toEqual(["three", null]);
      reader.close();
    }
    const db0 = new RedisChunkConnection(url(":secret%20word"));
    expect((await db0.getMany(["in-db-0"], () => null))[0]!.toString()).toBe("zero");
    db0.close();
  });

  it("fails every command sent with the handshake with the server's reason when the password is wrong", async () => {
    const reader = new RedisChunkConnection(url(":wrong"));
    const read = reader.getMany(["in-db-0"], () => null);
    const write = reader.command(["SET", "never", [Buffer.from("written")]]);
    await expect(read).rejects.toThrow(/WRONGPASS|invalid password/);
    await expect(write).rejects.toThrow(/WRONGPASS|invalid password/);
    reader.close();
    expect(await redis.cli("-a", "secret word", "--no-auth-warning", "EXISTS", "never")).toMatch(/^0/);
  });
});

describe("the Redis store's chunks through the chunk connection", () => {
  it("fails reads with KvStoreUnavailable (UNAVAILABLE to callers) once the server is gone", async () => {
    const redis = await startRedis();
    const store = await RedisKvStore.open(redis.url);
    await store.set("chunk", Buffer.from("bytes"), 60_000);
    expect(await store.getMany(["chunk", "none"], () => null)).toEqual([Buffer.from("bytes"), null]);
    await redis.stop();
    await expect(store.getMany(["chunk"], () => null)).rejects.toBeInstanceOf(KvStoreUnavailable);
    await store.close();
  }, 30_000);
});
