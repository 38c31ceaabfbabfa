/**
 * `make soak`: 32 grpc-js clients, each on its own connection, against a live
 * `kvwarden serve` (a child process on loopback) for a few minutes, with every
 * kind of call a backend makes and the ways calls end early: Prefills of
 * tokens and of text, Decode streams (some under a decode budget), Decodes
 * cancelled mid-stream, deadlines that expire, Forks, Evicts with every policy,
 * Stats and Releases, under budgets tight enough to refuse. Reports calls/s,
 * the status mix and p50/p99 latency per call, the server's longest event-loop
 * stall (its own prom-client gauge), the KV high-water mark against the budgets
 * and the server's RSS. Asserts nothing about time: it fails only on INTERNAL
 * or UNKNOWN, on a budget exceeded, or on the server dying.
 */
import { credentials, status, type ClientReadableStream } from "@grpc/grpc-js";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Command } from "commander";
import { POLICIES } from "../src/policies/registry.js";
import {
  DecodeRequest,
  EvictionSpec,
  EvictRequest,
  ForkRequest,
  KvCacheClient,
  PrefillRequest,
  ReleaseRequest,
  StatsRequest,
  type DecodeResponse,
  type EvictResponse,
  type ForkResponse,
  type PrefillResponse,
  type ReleaseResponse,
  type StatsResponse,
} from "../src/gen/kvwarden/v1/kvwarden.js";
import { bearer } from "./bearer-interceptor.js";
import { startKvwarden, tenantToken } from "./kvwarden-process.js";
import { MarkdownReport } from "./markdown-report.js";
import { rssOf } from "./process-rss.js";
import { scrapeSample } from "./prometheus-sample.js";
import { RpcTally } from "./rpc-tally.js";

const FULL_SECONDS = 180;
const QUICK_SECONDS = 20;
const options = new Command("soak")
  .option("--quick", `${QUICK_SECONDS} seconds instead of ${FULL_SECONDS}`, false)
  .option("--duration <seconds>", "how long the clients run", (v) => Number(v))
  .option("--clients <n>", "concurrent clients", (v) => Number(v), 32)
  .option("--step-stages <n>", "the server's --step-stages (default: its own default)")
  .option("--out <file>", "also write the report (Markdown) to this file")
  .parse()
  .opts();

const SECONDS: number = options.duration ?? (options.quick ? QUICK_SECONDS : FULL_SECONDS);
const CLIENTS: number = options.clients;
const TENANTS = ["red", "green", "blue", "gray"];
const SEQUENCE_CAP = 1024;
/** Tight on purpose, so that refusals are part of the mix. */
const SERVER_FLAGS = [
  ...["--allow-past-context", "--max-sequence-tokens", String(SEQUENCE_CAP), "--max-request-tokens", "256"],
  ...["--kv-budget", "24MiB", "--tenant-kv-budget", "8MiB", "--tenant-max-sequences", "24"],
  ...["--metrics-listen", "127.0.0.1:0"],
];
/** A client releases a sequence this long (in positions) before the per-sequence cap could refuse it. */
const RECYCLE_AT = SEQUENCE_CAP - 320;
const SEQUENCES_PER_CLIENT = 4;
const POLICY_NAMES = [...POLICIES.keys()];
const WORDS = "once upon a time there was a little girl named lily she loved to play outside in the park one day she saw a big red ball".split(" ");
/** The statuses that mean a server bug rather than a refusal, a cancellation or an expired deadline. */
const BROKEN = new Set([status.INTERNAL, status.UNKNOWN]);
const LAG_GAUGE = "nodejs_eventloop_lag_max_seconds";
/** The first seconds, when every client opens its first sequences at once (fresh memory for all of them). */
const BURST_SECONDS = 3;

/** Each kind of call and its share of the mix, in percent. */
const MIX = {
  "Prefill tokens": 16,
  "Prefill text": 10,
  "Prefill deadline": 3,
  Decode: 14,
  "Decode budget": 8,
  "Decode cancelled": 6,
  "Decode deadline": 4,
  Fork: 8,
  Evict: 10,
  Stats: 12,
  Release: 9,
} as const;
type Call = keyof typeof MIX;
const CALLS = Object.keys(MIX) as Call[];

const report = new MarkdownReport();
const print = (line?: string) => report.print(line);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const random = (n: number) => Math.floor(Math.random() * n);
const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
const tally = new RpcTally<Call>(CALLS, (code) => !BROKEN.has(code));

function pickCall(): Call {
  let roll = random(100);
  return CALLS.find((call) => (roll -= MIX[call]) < 0)!;
}

/** The most KV bytes seen in use, globally and per tenant, with the budgets they are held to. */
const kv = { used: 0, budget: 0, tenants: new Map<string, { used: number; quota: number }>() };
function watch(stats: StatsResponse): void {
  kv.used = Math.max(kv.used, Number(stats.kvBytesUsed));
  kv.budget = Number(stats.kvBytesBudget);
  const tenant = kv.tenants.get(stats.tenant) ?? { used: 0, quota: Number(stats.tenantKvBytesQuota) };
  kv.tenants.set(stats.tenant, { used: Math.max(tenant.used, Number(stats.tenantKvBytes)), quota: tenant.quota });
}

/** Token ids past BOS and EOS, inside the test model's 512-token vocabulary. */
function randomTokens(count: number): number[] {
  return Array.from({ length: count }, () => 3 + random(500));
}

function evictionSpec(): EvictionSpec {
  const policy = POLICY_NAMES[random(POLICY_NAMES.length)];
  return EvictionSpec.fromPartial(random(2) === 0 ? { policy, maxTokens: 32 + random(96) } : { policy, keepFraction: 0.5 });
}

/** One client: a few sequences of its own, driven by a random mix of calls until `until`. */
async function runClient(index: number, address: string, until: number): Promise<void> {
  const tenant = TENANTS[index % TENANTS.length];
  // Its own connection, as separate backend replicas would have.
  const client = new KvCacheClient(address, credentials.createInsecure(), { interceptors: [bearer(tenantToken(tenant))], "grpc.use_local_subchannel_pool": 1 });
  const ids = Array.from({ length: SEQUENCES_PER_CLIENT }, (_, n) => `soak-${index}-${n}`);
  /** Per sequence held, an upper bound on its position (tokens fed and generated). */
  const held = new Map<string, number>();

  const prefill = async (call: Call, id: string, request: Partial<PrefillRequest>, deadlineMs?: number) => {
    const { reply } = await tally.unary<PrefillResponse>(call, (m, done) =>
      client.prefill(PrefillRequest.fromPartial({ sequenceId: id, ...request }), m, { deadline: deadlineMs === undefined ? Infinity : Date.now() + deadlineMs }, done),
    );
    // A failed Prefill leaves a sequence as it was, and a new one absent.
    if (reply) held.set(id, reply.position);
  };
  const decode = async (call: Call, id: string, request: Partial<DecodeRequest>, open: (request: DecodeRequest) => ClientReadableStream<DecodeResponse>, cancelAfter?: number) => {
    const full = DecodeRequest.fromPartial({ sequenceId: id, ignoreEos: true, ...request });
    const { received, code } = await tally.stream(call, () => open(full), (_, count, stream) => count === cancelAfter && stream.cancel());
    if (code === status.NOT_FOUND) held.delete(id);
    // Cut short, the server may have generated more than the client saw.
    else held.set(id, held.get(id)! + (code === status.OK ? received : full.maxNewTokens));
  };
  const release = async (id: string) => {
    const { code } = await tally.unary<ReleaseResponse>("Release", (m, done) => client.release(ReleaseRequest.fromPartial({ sequenceId: id }), m, done));
    // ABORTED: a call this client gave up on still holds it; let it finish and release again later.
    if (code !== status.ABORTED) held.delete(id);
    return code;
  };

  while (performance.now() < until) {
    const id = ids[random(ids.length)];
    const position = held.get(id);
    let call = pickCall();
    // A sequence not held yet starts with a Prefill; one near the cap is let go.
    if (position === undefined && !call.startsWith("Prefill")) call = "Prefill tokens";
    if (position !== undefined && position > RECYCLE_AT) call = "Release";
    switch (call) {
      case "Prefill tokens":
        await prefill(call, id, { tokenIds: randomTokens(8 + random(120)), eviction: random(4) === 0 ? evictionSpec() : undefined });
        break;
      case "Prefill text":
        await prefill(call, id, { text: Array.from({ length: 5 + random(36) }, () => WORDS[random(WORDS.length)]).join(" ") });
        break;
      case "Prefill deadline":
        await prefill(call, id, { tokenIds: randomTokens(256) }, 1 + random(30));
        break;
      case "Decode":
        await decode(call, id, { maxNewTokens: 4 + random(28) }, (r) => client.decode(r));
        break;
      case "Decode budget":
        await decode(call, id, { maxNewTokens: 16 + random(32), eviction: { ...evictionSpec(), maxTokens: 48 + random(64), keepFraction: undefined } }, (r) => client.decode(r));
        break;
      case "Decode cancelled":
        await decode(call, id, { maxNewTokens: 64 }, (r) => client.decode(r), 1 + random(8));
        break;
      case "Decode deadline":
        await decode(call, id, { maxNewTokens: 64 }, (r) => client.decode(r, { deadline: Date.now() + 10 + random(60) }));
        break;
      case "Fork": {
        const target = ids.find((other) => !held.has(other));
        if (target === undefined) break;
        const { reply } = await tally.unary<ForkResponse>(call, (m, done) => client.fork(ForkRequest.fromPartial({ sequenceId: id, newSequenceId: target }), m, done));
        if (reply) held.set(target, reply.position);
        break;
      }
      case "Evict":
        await tally.unary<EvictResponse>(call, (m, done) => client.evict(EvictRequest.fromPartial({ sequenceId: id, eviction: evictionSpec() }), m, done));
        break;
      case "Stats": {
        const { reply } = await tally.unary<StatsResponse>(call, (m, done) => client.stats(StatsRequest.fromPartial({ sequenceId: random(2) === 0 ? id : "" }), m, done));
        if (reply) watch(reply);
        break;
      }
      case "Release":
        await release(id);
        break;
    }
  }
  for (const id of [...held.keys()]) while ((await release(id)) === status.ABORTED) await sleep(50);
  client.close();
}

const folder = mkdtempSync(join(tmpdir(), "kvwarden-soak-"));
const server = await startKvwarden(folder, TENANTS, [...SERVER_FLAGS, ...(options.stepStages ? ["--step-stages", String(options.stepStages)] : [])]);
const observer = new KvCacheClient(server.address, credentials.createInsecure(), { interceptors: [bearer(tenantToken(TENANTS[0]))] });
const stats = () => new Promise<StatsResponse>((resolve, reject) => observer.stats(StatsRequest.fromPartial({}), (error, reply) => (error ? reject(error) : resolve(reply))));
// prom-client resets the lag histogram at each scrape: this one drops the model load's stalls, and each later one covers the second before it.
const lagScrape = () => scrapeSample(server.metricsAddress!, LAG_GAUGE);
await lagScrape();

const rssBefore = rssOf(server.pid);
let rssPeak = rssBefore;
const bystander = spawn(process.execPath, [new URL("./idle-lag-probe.js", import.meta.url).pathname], { stdio: ["ignore", "pipe", "inherit"] });
const started = performance.now();
/** Each scrape's longest stall (the second before it), with when it was taken (seconds into the run). */
const stalls: { at: number; seconds: number }[] = [];
/** The same, each second, in an idle process beside the server (idle-lag-probe.ts). */
const bystanderStalls: { at: number; seconds: number }[] = [];
createInterface({ input: bystander.stdout }).on("line", (line) => bystanderStalls.push({ at: (performance.now() - started) / 1000, seconds: Number(line) }));
const kvPoller = setInterval(() => stats().then(watch, () => undefined), 100);
const lagPoller = setInterval(() => {
  if (server.exited()) return;
  rssPeak = Math.max(rssPeak, rssOf(server.pid));
  const at = (performance.now() - started) / 1000;
  lagScrape().then((seconds) => stalls.push({ at, seconds: seconds ?? 0 }), () => undefined);
}, 1_000);

await Promise.all(Array.from({ length: CLIENTS }, (_, i) => runClient(i, server.address, started + SECONDS * 1000)));
const elapsed = (performance.now() - started) / 1000;
clearInterval(kvPoller);
clearInterval(lagPoller);
bystander.kill();
const diedDuringRun = server.exited();
const final = diedDuringRun ? undefined : await stats();
if (final) watch(final);
if (!diedDuringRun) stalls.push({ at: elapsed, seconds: (await lagScrape()) ?? 0 });
/** The longest stall, that of the seconds after the clients' first burst (every client's first Prefill at once), and how many seconds had one over 20 and over 50 ms. */
const stallFigures = (seconds: { at: number; seconds: number }[]) => {
  const ms = (value: number) => `${(value * 1000).toFixed(1)} ms`;
  const over = (limit: number) => seconds.filter((second) => second.seconds * 1000 > limit).length;
  const longest = Math.max(0, ...seconds.map((second) => second.seconds));
  const afterBurst = Math.max(0, ...seconds.filter((second) => second.at > BURST_SECONDS).map((second) => second.seconds));
  return `${ms(longest)}; after the first ${BURST_SECONDS} s ${ms(afterBurst)}; seconds with one over 20 / 50 ms: ${over(20)} / ${over(50)} of ${seconds.length}`;
};
const rssAfter = diedDuringRun ? NaN : rssOf(server.pid);
observer.close();
const exitCode = await server.stop();
rmSync(folder, { recursive: true, force: true });

const command = `node dist/bench/soak.js${process.argv.slice(2).map((arg) => ` ${arg}`).join("")}`;
print(`# kvwarden soak: ${CLIENTS} clients, ${elapsed.toFixed(0)} s, stories260K on ${cpus().length} CPUs (load average ${loadavg()[0].toFixed(1)})`);
print();
if (SECONDS < FULL_SECONDS) print(`**A short run (${SECONDS} s), to check that the soak works; its figures are not those of a full run (\`make soak\`, ${FULL_SECONDS} s).**`), print();
print(`Command: \`${command}\`. \`make soak\` (also run by \`make bench\`) runs ${FULL_SECONDS} s and writes docs/bench/soak.md; \`make soak-quick\` runs ${QUICK_SECONDS} s.`);
print();
print(`Server flags: ${SERVER_FLAGS.join(" ")}; ${TENANTS.length} tenants, ${CLIENTS / TENANTS.length} clients each, up to ${SEQUENCES_PER_CLIENT} sequences per client; besides the clients, a watcher calls Stats every 100 ms and scrapes /metrics every second.`);
print(`Mix (percent of calls a client draws): ${CALLS.map((call) => `${call} ${MIX[call]}`).join(", ")}; a sequence not held starts with a Prefill, one past position ${RECYCLE_AT} is released.`);
print();
print(`Throughput: ${(tally.total / elapsed).toFixed(1)} calls/s (${tally.total} calls).`);
print();
for (const line of tally.table(elapsed)) print(line);
print();
print(`Longest event-loop stall in the server (\`${LAG_GAUGE}\`, scraped every second): ${stallFigures(stalls)}.`);
print(`The same in an idle Node process beside it (\`bench/idle-lag-probe.ts\`, measured the same way: what the machine alone costs an event loop): ${stallFigures(bystanderStalls)}.`);
print();
const tenants = [...kv.tenants].sort();
print(`KV high-water mark: ${mib(kv.used)} MiB of the ${mib(kv.budget)} MiB budget; per tenant ${tenants.map(([tenant, t]) => `${tenant} ${mib(t.used)} of ${mib(t.quota)} MiB`).join(", ")}; ${final ? mib(Number(final.kvBytesUsed)) : "?"} MiB in use after the clients released their sequences.`);
print();
print(`Server RSS: ${mib(rssBefore)} MiB before the clients, ${mib(rssPeak)} MiB at the most, ${mib(rssAfter)} MiB after.`);

const failures = [
  ...tally.unexpected.map((line) => `status: ${line}`),
  ...(kv.used > kv.budget ? [`KV use ${kv.used} exceeded the budget ${kv.budget}`] : []),
  ...tenants.filter(([, t]) => t.used > t.quota).map(([tenant, t]) => `tenant ${tenant}'s KV use ${t.used} exceeded its quota ${t.quota}`),
  ...(diedDuringRun ? [`the server died during the run (exit ${exitCode})`] : exitCode !== 0 ? [`the server exited ${exitCode} on SIGTERM`] : []),
];
print();
print(failures.length === 0 ? "Checks passed: no INTERNAL or UNKNOWN status, budgets kept, the server up throughout." : `FAILED:\n${failures.map((f) => `- ${f}`).join("\n")}`);
if (options.out) report.write(options.out);
process.exitCode = failures.length === 0 ? 0 : 1;
