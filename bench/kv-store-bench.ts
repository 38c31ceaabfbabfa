/**
 * The KV store's throughput (docs/kv-store.md, "Benchmarks"): writing and reading a sequence snapshot
 * through SnapshotStore (4 MiB chunks gathered from the snapshot's arrays with an xxHash64 each, SET/GET,
 * the manifest under the lease; read back: GET, checksum, decode) against `redis-benchmark` SET/GET of
 * values of the chunk size on the same redis-server, in the same run, as a ratio. Goal: at least 0.7x.
 * The same run splits the gap: the store's writes alone (SETs of chunks, no snapshot work), node-redis
 * GET, a bare socket, and copies into fresh and reused memory. A benchmark, never a test.
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
import { encodeSnapshot, encodeSnapshotChunks } from "../src/kv/store/snapshot-codec.js";
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
const ANCHOR_REQUESTS = options.quick ? 20 : 50;
const WARM_UP_CYCLES = 10;
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

/**
 * redis-benchmark's requests per second for SET and GET of `bytes`-byte values: one connection (-c 1)
 * and no pipelining (-P 1), the concurrency of the store's one client; `requests` of them, enough
 * that its millisecond clock does not round the figure away.
 */
async function redisBenchmark(port: number, bytes: number, requests: number): Promise<{ set: number; get: number }> {
  const args = ["-p", String(port), "-t", "set,get", "-d", String(bytes), "-n", String(requests), "-c", "1", "-P", "1", "--csv"];
  const child = spawn("redis-benchmark", args);
  let output = "";
  child.stdout.on("data", (data: Buffer) => (output += data.toString()));
  await once(child, "close"); // its output read to the end
  const rps = (test: string) => Number(output.match(new RegExp(`^"${test}","([\\d.]+)"`, "m"))?.[1] ?? NaN);
  return { set: rps("SET"), get: rps("GET") };
}

/**
 * Seconds of one `command`, median of `runs`, after one untimed run: what ran between samples (the
 * anchor, other lines, copies of fresh memory) has pushed this line's buffers out of the CPU's caches,
 * while redis-benchmark's loop is warm after its first request.
 */
async function seconds(runs: number, command: () => Promise<unknown> | unknown): Promise<number> {
  await command();
  const times: number[] = [];
  for (let run = 0; run < runs; run++) {
    const started = performance.now();
    await command();
    times.push((performance.now() - started) / 1000);
  }
  return median(times);
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

/**
 * What a save asks of the server without the snapshot work: its chunks under new keys (a save never
 * overwrites the current snapshot's), then the DEL of the previous ones. redis-benchmark's SET
 * overwrites one key.
 */
const NEW_KEY_CHUNKS = 4;
let newKeyGeneration = 0;
async function setNewKeys(chunk: Buffer): Promise<void> {
  const generation = newKeyGeneration++;
  const keys = (g: number) => Array.from({ length: NEW_KEY_CHUNKS }, (_, i) => `bench-new:${g}:${i}`);
  await Promise.all(keys(generation).map((key) => store.set(key, chunk, 600_000)));
  if (generation > 0) await store.delete(keys(generation - 1));
}

const snapshot = benchmarkSnapshot();
const bytes = encodeSnapshot(snapshot).length;
const redis = await startRedis();
const store = await RedisKvStore.open(redis.url);
try {
  const snapshots = new SnapshotStore({ store, prefix: "bench", model: "bench", replica: "bench", leaseMs: 3_600_000, ttlMs: 3_600_000 }); // held for the whole run: the full run outlasts a minute
  const lease = await snapshots.acquire("", "bench");
  // Warm-up: a fresh process pays for the first touch of every page it allocates (a page fault each,
  // dear in a VM), for tens of MiB, before freed memory is reused; redis-benchmark's buffers are reused
  // from its first request. Measured from a steady state, like a long-running sidecar.
  for (let cycle = 0; cycle < WARM_UP_CYCLES; cycle++) {
    await snapshots.save(lease, snapshot);
    (await snapshots.load("", "bench"))!.done();
  }
  const chunk = Buffer.alloc(DEFAULT_CHUNK_BYTES, 7);
  await store.set("bench-value", chunk, 600_000);
  const samples: Record<string, number[]> = {};
  const sample = (name: string, bytesPerSecond: number) => (samples[name] ??= []).push(bytesPerSecond);
  const reused = Buffer.alloc(DEFAULT_CHUNK_BYTES);
  // Interleaved, RUNS times, so that every line sees the same machine.
  for (let run = 0; run < RUNS; run++) {
    sample("save", bytes / (await seconds(3, () => snapshots.save(lease, snapshot))));
    sample("load", bytes / (await seconds(3, async () => (await snapshots.load("", "bench"))!.done())));
    const anchor = await redisBenchmark(redis.port, DEFAULT_CHUNK_BYTES, ANCHOR_REQUESTS);
    sample("SET", anchor.set * DEFAULT_CHUNK_BYTES);
    sample("GET", anchor.get * DEFAULT_CHUNK_BYTES);
    sample("client SET", DEFAULT_CHUNK_BYTES / (await seconds(3, () => store.set("bench-value", chunk, 600_000))));
    sample("client SET new keys", (NEW_KEY_CHUNKS * DEFAULT_CHUNK_BYTES) / (await seconds(3, () => setNewKeys(chunk))));
    sample("node-redis GET", DEFAULT_CHUNK_BYTES / (await seconds(3, () => store.get("bench-value"))));
    sample("bare GET", DEFAULT_CHUNK_BYTES / (await bareGetSeconds(redis.port, "bench-value", DEFAULT_CHUNK_BYTES, false, 3)));
    sample("bare large GET", DEFAULT_CHUNK_BYTES / (await bareGetSeconds(redis.port, "bench-value", DEFAULT_CHUNK_BYTES, true, 3)));
    sample("copy fresh", DEFAULT_CHUNK_BYTES / (await seconds(3, () => chunk.copy(Buffer.allocUnsafe(DEFAULT_CHUNK_BYTES)))));
    sample("copy reused", DEFAULT_CHUNK_BYTES / (await seconds(3, () => chunk.copy(reused))));
  }
  const rate = (name: string) => median(samples[name]);
  const mb = (name: string) => (rate(name) / 2 ** 20).toFixed(0);
  const row = (what: string, name: string, anchor: string) => report.print(`| ${what} | ${mb(name)} | ${(rate(name) / rate(anchor)).toFixed(2)}x |`);

  report.print(`# KV store throughput: snapshots against redis-benchmark (${options.quick ? "quick" : "full"})`);
  report.print();
  report.print(`Command: \`node dist/bench/kv-store-bench.js${options.quick ? " --quick" : ""}\`; ${WARM_UP_CYCLES} save/load cycles of warm-up, then medians of ${RUNS} interleaved runs (one untimed operation, then 3 timed, each) on one redis-server ${(await redis.cli("INFO", "server")).match(/redis_version:(\S+)/)?.[1]} on loopback.`);
  report.print(`Machine: ${cpus()[0]?.model.trim() ?? "unknown CPU"} x${cpus().length}, Node ${process.version}${process.execArgv.length ? ` (${process.execArgv.join(" ")})` : ""}, load average at the start ${loadavg().map((l) => l.toFixed(2)).join(" ")}.`);
  report.print();
  report.print(`Snapshot: ${SHAPE.layers} layers x ${SHAPE.kvHeads} KV heads x ${KEPT} entries of ${SHAPE.headSize} (float32), ring of 64 queries, ${snapshot.lastLogits!.length} logits: ${(bytes / 2 ** 20).toFixed(1)} MiB in ${encodeSnapshotChunks(snapshot, DEFAULT_CHUNK_BYTES).length} chunk(s) of at most 4 MiB. Anchor: \`redis-benchmark -t set,get -d ${DEFAULT_CHUNK_BYTES} -c 1 -P 1 -n ${ANCHOR_REQUESTS}\` (the chunk size, one connection like the store's client, no pipelining). Throughput is bytes moved per second on both sides.`);
  report.print();
  report.print("| write path | MiB/s | vs redis-benchmark SET |");
  report.print("|---|---|---|");
  row("redis-benchmark SET (anchor)", "SET", "SET");
  row("the store's SET of one 4 MiB chunk (its own connection, no snapshot work)", "client SET", "SET");
  row(`the store's SETs of ${NEW_KEY_CHUNKS} chunks to new keys, then DEL of the ${NEW_KEY_CHUNKS} before (a save's writes, no snapshot work)`, "client SET new keys", "SET");
  row("snapshot save (SET each chunk gathered from the snapshot's arrays, its xxHash64 while it is sent, the fenced manifest right behind, old chunks deleted)", "save", "SET");
  report.print();
  report.print("| read path | MiB/s | vs redis-benchmark GET |");
  report.print("|---|---|---|");
  row("redis-benchmark GET (anchor)", "GET", "GET");
  row("bare node:net GET, default reads (64 KiB each, a new Buffer apiece)", "bare GET", "GET");
  row("bare node:net GET, reads into one 8 MiB buffer (`onread`)", "bare large GET", "GET");
  row("node-redis GET of one 4 MiB chunk (how TLS and Cluster stores read, no snapshot work)", "node-redis GET", "GET");
  row("snapshot load (manifest, GET chunks through the store's connection in rounds of 8 MiB, xxHash64, decode)", "load", "GET");
  report.print();
  report.print("| memory (no network) | MiB/s | vs redis-benchmark GET |");
  report.print("|---|---|---|");
  row("copy 4 MiB into freshly allocated memory (first touch of every page)", "copy fresh", "GET");
  row("copy 4 MiB into memory already touched", "copy reused", "GET");
  if (options.out) report.write(options.out);
} finally {
  await store.close();
  await redis.stop();
}
