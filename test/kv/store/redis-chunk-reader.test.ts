import { createClient, ErrorReply, RESP_TYPES } from "redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RedisChunkReader } from "../../../src/kv/store/redis-chunk-reader.js";
import { RedisKvStore } from "../../../src/kv/store/redis-kv-store.js";
import { KvStoreUnavailable } from "../../../src/kv/store/store-errors.js";
import { startRedis, type RedisProcess } from "./support/redis-server.js";

// The store's own reader of snapshot chunks (docs/kv-store.md, "Benchmarks") against a real
// redis-server: what it reads must equal what node-redis reads, whatever the value and the handshake.

const MiB = 2 ** 20;

/** Bytes that are not text: every byte value, and \r\n inside, so a parser that looks for line ends in values fails. */
function binaryValue(bytes: number, seed: number): Buffer {
  const value = Buffer.allocUnsafe(bytes);
  for (let i = 0; i < bytes; i++) value[i] = (i * 31 + seed * 17 + (i >> 8)) & 0xff;
  for (let i = 0; i + 1 < bytes; i += 997) value.write("\r\n", i, "latin1");
  return value;
}

describe("the chunk reader on a real redis-server", () => {
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
    const reader = new RedisChunkReader(new URL(redis.url));
    const values = await reader.getMany(keys, (bytes) => (bytes === 4 * MiB ? given : null));
    reader.close();
    for (const [i, key] of keys.entries()) expect(values[i]!.equals((await nodeRedisGet(key))!), key).toBe(true);
    expect(values[sizes.indexOf(4 * MiB)]!.buffer).toBe(given.buffer);
    // A value larger than the buffer offered gets one of its own rather than being cut.
    const reader2 = new RedisChunkReader(new URL(redis.url));
    const [large] = await reader2.getMany(["value:9437189"], () => given);
    reader2.close();
    expect(large!.length).toBe(9 * MiB + 5);
    expect(large!.equals(binaryValue(9 * MiB + 5, sizes.length - 1))).toBe(true);
  });

  it("answers null for a missing key and keeps replies in order across concurrent pipelines", async () => {
    await Promise.all(Array.from({ length: 40 }, (_, i) => client.set(`ordered:${i}`, binaryValue(1000 + i * 5000, i))));
    const reader = new RedisChunkReader(new URL(redis.url));
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
    const reader = new RedisChunkReader(new URL(redis.url));
    const failed = await reader.getMany(["a-hash", "after"], noBuffers).catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(ErrorReply);
    expect((failed as Error).message).toMatch(/^WRONGTYPE/);
    expect((await reader.getMany(["after"], noBuffers))[0]!.toString()).toBe("still here");
    reader.close();
  });

  it("reopens its connection on the next read after the server closed it", async () => {
    await client.set("survivor", "yes");
    const reader = new RedisChunkReader(new URL(redis.url));
    expect((await reader.getMany(["survivor"], noBuffers))[0]!.toString()).toBe("yes");
    expect(Number(await redis.cli("CLIENT", "KILL", "TYPE", "normal"))).toBeGreaterThanOrEqual(1);
    await client.ping(); // node-redis reconnects on its own; by its answer the reader has seen its own connection close
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await reader.getMany(["survivor"], noBuffers)).toEqual([Buffer.from("yes")]);
    reader.close();
  });
});

describe("the chunk reader's handshake", () => {
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
    for (const reader of [new RedisChunkReader(url(":secret%20word", "/3")), new RedisChunkReader(url("reader:reader%20pass", "/3"))]) {
      expect((await reader.getMany(["in-db-3", "in-db-0"], () => null)).map((value) => value?.toString() ?? null)).toEqual(["three", null]);
      reader.close();
    }
    const db0 = new RedisChunkReader(url(":secret%20word"));
    expect((await db0.getMany(["in-db-0"], () => null))[0]!.toString()).toBe("zero");
    db0.close();
  });

  it("fails a read with the server's reason when the password is wrong", async () => {
    const reader = new RedisChunkReader(url(":wrong"));
    await expect(reader.getMany(["in-db-0"], () => null)).rejects.toThrow(/WRONGPASS|invalid password/);
    reader.close();
  });
});

describe("the Redis store's reads through the chunk reader", () => {
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
