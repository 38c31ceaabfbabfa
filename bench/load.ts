/**
 * `make load`: 32 concurrent grpc-js clients against a live `kvwarden serve`
 * (a child process, on loopback) with mixed Prefill/Decode/Evict/Stats/Release,
 * eviction policies, and global and per-tenant budgets tight enough to force
 * refusals, for a bounded time. Reports throughput, p50/p99 latency per RPC,
 * status counts, the KV high-water mark and the server's RSS over time; exits
 * non-zero on any unexpected status, on the budget being exceeded, or on RSS
 * growing after the load ends. A benchmark, not a test.
 */
import { credentials, status } from "@grpc/grpc-js";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { bearer } from "./bearer-interceptor.js";
import { startKvwarden, tenantToken } from "./kvwarden-process.js";
import { MarkdownReport } from "./markdown-report.js";
import { rssOf } from "./process-rss.js";
import { RpcTally } from "./rpc-tally.js";
import {
  DecodeRequest,
  EvictRequest,
  KvCacheClient,
  PrefillRequest,
  ReleaseRequest,
  StatsRequest,
  type EvictResponse,
  type PrefillResponse,
  type ReleaseResponse,
  type StatsResponse,
} from "../src/gen/kvwarden/v1/kvwarden.js";

const options = new Command("load")
  .option("--quick", "20 seconds instead of the default", false)
  .option("--seconds <n>", "how long the load runs", (v) => Number(v))
  .option("--clients <n>", "concurrent clients", (v) => Number(v), 32)
  .option("--out <file>", "also write the report (Markdown) to this file")
  .parse()
  .opts();

const SECONDS = options.seconds ?? (options.quick ? 20 : 150);
const CLIENTS: number = options.clients;
const TENANTS = ["red", "green", "blue", "gray"];
const SEQUENCE_CAP = 1024;
/** Tight on purpose: 32 clients with 3 sequences each want several times this. */
const SERVER_FLAGS = ["--allow-past-context", "--max-sequence-tokens", String(SEQUENCE_CAP), "--kv-budget", "24MiB", "--tenant-kv-budget", "8MiB", "--tenant-max-sequences", "20", "--max-request-tokens", "256"];
const POLICIES = ["streaming_llm", "snapkv", "pyramidkv", "adakv", "h2o", "tova", "knorm", "random", "nacl", "simlayerkv"];
/** Refusals the load is built to provoke; anything else is a failure. */
const EXPECTED = new Set([status.OK, status.RESOURCE_EXHAUSTED]);

const report = new MarkdownReport();
const print = (line?: string) => report.print(line);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const random = (n: number) => Math.floor(Math.random() * n);

type Method = "Prefill" | "Decode" | "Evict" | "Stats" | "Release";
const tally = new RpcTally<Method>(["Prefill", "Decode", "Evict", "Stats", "Release"], (code) => EXPECTED.has(code));

/** One client: a few sequences of its own, driven by a random mix of calls until `until`. */
async function runClient(index: number, address: string, until: number): Promise<void> {
  const tenant = TENANTS[index % TENANTS.length];
  // Its own connection, as separate backend replicas would have.
  const client = new KvCacheClient(address, credentials.createInsecure(), { interceptors: [bearer(tenantToken(tenant))], "grpc.use_local_subchannel_pool": 1 });
  /** Per live sequence, an upper bound on its longest KV head (what the per-sequence cap limits). */
  const longest = new Map<string, number>();
  const ids = [0, 1, 2].map((n) => `client-${index}-${n}`);
  const spec = () => ({ policy: POLICIES[random(POLICIES.length)], maxTokens: 64 + random(64) });
  const release = (id: string) => tally.unary<ReleaseResponse>("Release", (m, done) => client.release(ReleaseRequest.fromPartial({ sequenceId: id }), m, done));
  const evict = async (id: string) => {
    const { reply } = await tally.unary<EvictResponse>("Evict", (m, done) => client.evict(EvictRequest.fromPartial({ sequenceId: id, eviction: spec() }), m, done));
    if (reply?.eviction?.applied) longest.set(id, Math.max(...reply.eviction.kept.flatMap((layer) => layer.headLengths)));
  };
  while (performance.now() < until) {
    const id = ids[random(ids.length)];
    const held = longest.get(id);
    const roll = random(100);
    if (held !== undefined && held > SEQUENCE_CAP - 300) {
      // Near the per-sequence cap: compress before anything else.
      await evict(id);
    } else if (held === undefined || roll < 30) {
      const tokenIds = Array.from({ length: 8 + random(120) }, () => 3 + random(500));
      const eviction = random(4) === 0 ? spec() : undefined;
      const { reply } = await tally.unary<PrefillResponse>("Prefill", (m, done) => client.prefill(PrefillRequest.fromPartial({ sequenceId: id, tokenIds, eviction }), m, done));
      if (reply) longest.set(id, reply.eviction?.applied ? Math.max(...reply.eviction.kept.flatMap((layer) => layer.headLengths)) : (held ?? 0) + tokenIds.length);
    } else if (roll < 60) {
      const request = DecodeRequest.fromPartial({ sequenceId: id, maxNewTokens: 4 + random(28), ignoreEos: true, eviction: random(5) === 0 ? spec() : undefined });
      const { received } = await tally.stream("Decode", () => client.decode(request));
      // A decode budget keeps the sequence near its budget; without one every token stays.
      longest.set(id, request.eviction ? Math.min(held + received, request.eviction.maxTokens! + 64) : held + received);
    } else if (roll < 75) {
      await evict(id);
    } else if (roll < 90) {
      await tally.unary<StatsResponse>("Stats", (m, done) => client.stats(StatsRequest.fromPartial({ sequenceId: random(2) === 0 ? id : "" }), m, done));
    } else if ((await release(id)).code === status.OK) {
      longest.delete(id);
    }
  }
  for (const id of ids) await release(id);
  client.close();
}

const folder = mkdtempSync(join(tmpdir(), "kvwarden-load-"));
const server = await startKvwarden(folder, TENANTS, SERVER_FLAGS);
const observer = new KvCacheClient(server.address, credentials.createInsecure(), { interceptors: [bearer(tenantToken(TENANTS[0]))] });
const stats = () =>
  new Promise<{ used: number; budget: number }>((resolve, reject) =>
    observer.stats(StatsRequest.fromPartial({}), (error, reply) => (error ? reject(error) : resolve({ used: Number(reply.kvBytesUsed), budget: Number(reply.kvBytesBudget) }))),
  );

const idleRss = rssOf(server.pid);
const started = performance.now();
const until = started + SECONDS * 1000;
let highWater = 0;
let budget = 0;
const rssSeries: { second: number; rss: number; used: number }[] = [];
const sampler = setInterval(async () => {
  const now = await stats().catch(() => undefined);
  if (!now) return;
  highWater = Math.max(highWater, now.used);
  budget = now.budget;
  const second = Math.round((performance.now() - started) / 1000);
  if (rssSeries.length === 0 || second >= rssSeries.at(-1)!.second + Math.max(1, Math.round(SECONDS / 15))) rssSeries.push({ second, rss: rssOf(server.pid), used: now.used });
}, 100);

await Promise.all(Array.from({ length: CLIENTS }, (_, i) => runClient(i, server.address, until)));
clearInterval(sampler);
const elapsed = (performance.now() - started) / 1000;
const endRss = rssOf(server.pid);
// Idle a while, as a sidecar between bursts would: memory must not keep growing with nothing to do.
await sleep(5_000);
const afterRss = rssOf(server.pid);
const after = await stats();
observer.close();
const exitCode = await server.stop();
rmSync(folder, { recursive: true, force: true });

const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
const total = tally.total;
print(`# kvwarden load: ${CLIENTS} clients, ${elapsed.toFixed(0)} s, stories260K on ${cpus().length} CPUs (load average ${loadavg()[0].toFixed(1)})`);
print();
print(`Server flags: ${SERVER_FLAGS.join(" ")}; ${TENANTS.length} tenants, ${CLIENTS / TENANTS.length} clients each, 3 sequences per client.`);
print();
print(`Throughput: ${(total / elapsed).toFixed(0)} calls/s (${total} calls).`);
print();
for (const line of tally.table(elapsed)) print(line);
print();
print(`KV high-water mark: ${mib(highWater)} MiB of the ${mib(budget)} MiB budget; ${mib(after.used)} MiB in use after the clients released their sequences.`);
print();
print(`Server RSS: ${mib(idleRss)} MiB idle before; ${rssSeries.map((s) => `${mib(s.rss)} (${s.second} s)`).join(", ")}; ${mib(endRss)} MiB at the end; ${mib(afterRss)} MiB after 5 s idle.`);

// The second half of the run must not sit higher than the first half's peak: a leak grows with calls.
const half = rssSeries.filter((s) => s.second <= SECONDS / 2);
const firstPeak = Math.max(...half.map((s) => s.rss));
const failures = [
  ...tally.unexpected.map((line) => `unexpected status: ${line}`),
  ...(highWater > budget ? [`KV use ${highWater} exceeded the budget ${budget}`] : []),
  ...(after.used !== 0 ? [`${after.used} KV bytes still in use after every sequence was released`] : []),
  ...(afterRss > Math.max(firstPeak, endRss) * 1.05 ? [`RSS grew after the load: ${mib(afterRss)} MiB, peak ${mib(Math.max(firstPeak, endRss))} MiB`] : []),
  ...(endRss > firstPeak * 1.15 ? [`RSS kept growing: ${mib(endRss)} MiB at the end, ${mib(firstPeak)} MiB peak in the first half`] : []),
  ...(exitCode !== 0 ? [`the server exited ${exitCode} on SIGTERM`] : []),
];
print();
print(failures.length === 0 ? "Checks passed: no unexpected status, budget kept, memory returned, no RSS growth." : `FAILED:\n${failures.map((f) => `- ${f}`).join("\n")}`);
if (options.out) report.write(options.out);
process.exitCode = failures.length === 0 ? 0 : 1;
