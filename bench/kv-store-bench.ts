/**
 * The KV store's throughput (docs/kv-store.md, "Benchmarks"): writing and reading a sequence snapshot
 * through SnapshotStore (encode, 4 MiB chunks with sha256, SET/GET, the manifest under the lease;
 * read back: GET, checksum, decode) against `redis-benchmark` SET/GET of values of the chunk size on
 * the same redis-server, in the same run, as a ratio. Goal: at least 0.7x. A benchmark, never a test.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { connect } from "node:net";
import { cpus, loadavg } from "node:os";
import { Command } from "commander";
import { Sequence } from "../src/engine/sequence.js";
import { SlabPool } from "../src/kv/slab-pool.js";
import { RedisKvStore } from "../src/kv/store/redis-kv-store.js";
import { captureSnapshot, type KvSnapshot } from "../src/kv/store/sequence-snapshot.js";
import { encodeSnapshot } from "../src/kv/store/snapshot-codec.js";
import { DEFAULT_CHUNK_BYTES } from "../src/kv/store/snapshot-manifest.js";
import { SnapshotStore } from "../src/kv/store/snapshot-store.js";
import { startRedis } from "../test/kv/store/support/redis-server.js";
import { MarkdownReport } from "./markdown-report.js";

const options = new Command("kv-store-bench")
  .option("--quick", "a smaller snapshot and fewer runs", false)
  .option("--out <file>", "also write the report (Markdown) to this file")
  .parse()
  .opts<{ quick: boolean; out?: string }>();

// The cache of the ~200M-parameter benchmark model (12 layers, 4 KV heads of 64) after snapkv kept
// 20% of a 2,048-token prompt (410 entries per head); the quick run keeps 128 tokens over 6 layers.
const SHAPE = { layers: options.quick ? 6 : 12, heads: 16, kvHeads: 4, headSize: 64 };
const KEPT = options.quick ? 128 : 410;
const RUNS = options.quick ? 5 : 20;
const report = new MarkdownReport();
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

/** A sequence of the benchmark model's shape filled with `KEPT` entries per head of pseudo-random keys and values. */
function benchmarkSnapshot(): KvSnapshot {
  const pool = new SlabPool(2 ** 31);
  const sequence = new Sequence("bench", "", pool, SHAPE, 64);
  let seed = 1;
  const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31) * 2 - 1;
  const rows = new Float32Array(SHAPE.kvHeads * KEPT * SHAPE.headSize).map(random);
  for (const layer of sequence.layers) {
    layer.reserve(KEPT);
    layer.append(rows, rows, 0, KEPT, 0, new Float32Array(SHAPE.kvHeads * 2 * KEPT).map(random), 0, KEPT);
  }
  sequence.recentQueries.push(new Float32Array(SHAPE.layers * SHAPE.heads * 64 * SHAPE.headSize).map(random), 64, KEPT - 64);
  const fedTokenIds = Array.from({ length: KEPT * 5 }, (_, i) => i % 32_000);
  const lastLogits = new Float32Array(32_000).map(random);
  sequence.resume({ fedTokenIds, evictedAt: fedTokenIds.length, pendingToken: null, lastToken: fedTokenIds.at(-1)!, lastLogits, decodeBudget: null, lazyLayers: [] });
  return captureSnapshot(sequence);
}

/** redis-benchmark's requests per second for SET and GET of `bytes`-byte values over `connections` connections. */
async function redisBenchmark(port: number, bytes: number, requests: number, connections: number): Promise<{ set: number; get: number }> {
  const args = ["-p", String(port), "-t", "set,get", "-d", String(bytes), "-n", String(requests), "-c", String(connections), "--csv"];
  const child = spawn("redis-benchmark", args);
  let output = "";
  child.stdout.on("data", (data: Buffer) => (output += data.toString()));
  await once(child, "exit");
  const rps = (test: string) => Number(output.match(new RegExp(`^"${test}","([\\d.]+)"`, "m"))?.[1] ?? NaN);
  return { set: rps("SET"), get: rps("GET") };
}

/**
 * Seconds for a bare node:net socket to read a `bytes`-byte GET reply: with Node's default reads (64 KiB
 * each, one event-loop turn apiece), or into an 8 MiB buffer (`onread`), which node-redis does not offer.
 * The diagnosis of the read ratio: where Node's socket reading alone stands against redis-benchmark.
 */
async function bareGetSeconds(port: number, key: string, bytes: number, largeReads: boolean, runs: number): Promise<number> {
  let onBytes: (count: number) => void = () => {};
  const socket = largeReads
    ? connect({ port, host: "127.0.0.1", onread: { buffer: Buffer.alloc(8 * 2 ** 20), callback: (count: number) => (onBytes(count), true) } })
    : connect({ port, host: "127.0.0.1" }).on("data", (data: Buffer) => onBytes(data.length));
  await once(socket, "connect");
  const reply = bytes + String(bytes).length + 5; // $<length>\r\n<bytes>\r\n
  const times: number[] = [];
  for (let run = 0; run < runs; run++) {
    const started = performance.now();
    await new Promise<void>((resolve) => {
      let received = 0;
      onBytes = (count) => {
        received += count;
        if (received >= reply) resolve();
      };
      socket.write(`*2\r\n$3\r\nGET\r\n$${Buffer.byteLength(key)}\r\n${key}\r\n`);
    });
    times.push((performance.now() - started) / 1000);
  }
  socket.destroy();
  return median(times);
}

const snapshot = benchmarkSnapshot();
const bytes = encodeSnapshot(snapshot).length;
const redis = await startRedis();
const store = await RedisKvStore.open(redis.url);
try {
  const snapshots = new SnapshotStore({ store, prefix: "bench", model: "bench", replica: "bench", leaseMs: 60_000, ttlMs: 600_000 });
  const lease = await snapshots.acquire("", "bench");
  await snapshots.save(lease, snapshot); // warm-up
  await snapshots.load("", "bench");
  const writes: number[] = [];
  const reads: number[] = [];
  // One connection, as the store uses; and four, redis-benchmark's best on this machine.
  const anchors: { set: number; get: number }[] = [];
  const anchors4: { set: number; get: number }[] = [];
  const bareReads: number[] = [];
  const bareLargeReads: number[] = [];
  await store.set("bench-value", Buffer.alloc(DEFAULT_CHUNK_BYTES, 7), 600_000);
  // Interleaved: store, then redis-benchmark, RUNS times, so both see the same machine.
  for (let run = 0; run < RUNS; run++) {
    let started = performance.now();
    await snapshots.save(lease, snapshot);
    writes.push((performance.now() - started) / 1000);
    started = performance.now();
    await snapshots.load("", "bench");
    reads.push((performance.now() - started) / 1000);
    anchors.push(await redisBenchmark(redis.port, DEFAULT_CHUNK_BYTES, options.quick ? 8 : 20, 1));
    anchors4.push(await redisBenchmark(redis.port, DEFAULT_CHUNK_BYTES, options.quick ? 8 : 20, 4));
    bareReads.push(DEFAULT_CHUNK_BYTES / (await bareGetSeconds(redis.port, "bench-value", DEFAULT_CHUNK_BYTES, false, 3)));
    bareLargeReads.push(DEFAULT_CHUNK_BYTES / (await bareGetSeconds(redis.port, "bench-value", DEFAULT_CHUNK_BYTES, true, 3)));
  }
  const mb = (bytesPerSecond: number) => (bytesPerSecond / 2 ** 20).toFixed(0);
  const write = bytes / median(writes);
  const read = bytes / median(reads);
  const set = median(anchors.map((a) => a.set)) * DEFAULT_CHUNK_BYTES;
  const get = median(anchors.map((a) => a.get)) * DEFAULT_CHUNK_BYTES;
  const set4 = median(anchors4.map((a) => a.set)) * DEFAULT_CHUNK_BYTES;
  const get4 = median(anchors4.map((a) => a.get)) * DEFAULT_CHUNK_BYTES;

  report.print(`# KV store throughput: snapshots against redis-benchmark (${options.quick ? "quick" : "full"})`);
  report.print();
  report.print(`Command: \`node dist/bench/kv-store-bench.js${options.quick ? " --quick" : ""}\`; medians of ${RUNS} interleaved runs on one redis-server ${(await redis.cli("INFO", "server")).match(/redis_version:(\S+)/)?.[1]} on loopback.`);
  report.print(`Machine: ${cpus()[0]?.model.trim() ?? "unknown CPU"} x${cpus().length}, Node ${process.version}, load average at the start ${loadavg().map((l) => l.toFixed(2)).join(" ")}.`);
  report.print();
  report.print(`Snapshot: ${SHAPE.layers} layers x ${SHAPE.kvHeads} KV heads x ${KEPT} entries of ${SHAPE.headSize} (float32), ring of 64 queries, ${snapshot.lastLogits!.length} logits: ${(bytes / 2 ** 20).toFixed(1)} MiB in ${Math.ceil(bytes / DEFAULT_CHUNK_BYTES)} chunks of 4 MiB. Anchors: \`redis-benchmark -t set,get -d ${DEFAULT_CHUNK_BYTES} -c 1\` (one connection, as the store uses) and \`-c 4\`.`);
  report.print();
  report.print("| operation | snapshot MiB/s | redis-benchmark -c 1 MiB/s | ratio | redis-benchmark -c 4 MiB/s | ratio |");
  report.print("|---|---|---|---|---|---|");
  report.print(`| write (save) vs SET | ${mb(write)} | ${mb(set)} | ${(write / set).toFixed(2)}x | ${mb(set4)} | ${(write / set4).toFixed(2)}x |`);
  report.print(`| read (load) vs GET | ${mb(read)} | ${mb(get)} | ${(read / get).toFixed(2)}x | ${mb(get4)} | ${(read / get4).toFixed(2)}x |`);
  report.print();
  report.print("Where Node's own socket reading stands (GET of the same 4 MiB value, bare node:net, no client library):");
  report.print();
  report.print("| reader | MiB/s | vs redis-benchmark -c 1 GET |");
  report.print("|---|---|---|");
  report.print(`| node:net, default 64 KiB reads | ${mb(median(bareReads))} | ${(median(bareReads) / get).toFixed(2)}x |`);
  report.print(`| node:net, 8 MiB reads (onread) | ${mb(median(bareLargeReads))} | ${(median(bareLargeReads) / get).toFixed(2)}x |`);
  if (options.out) report.write(options.out);
} finally {
  await store.close();
  await redis.stop();
}
