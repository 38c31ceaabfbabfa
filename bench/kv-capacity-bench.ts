/**
 * Capacity with and without the KV store (docs/kv-store.md, "Benchmarks"): with one fixed --kv-budget,
 * how many sessions a server holds before its first RESOURCE_EXHAUSTED, in memory only and with a
 * local redis-server as the store (which offloads least recently used idle sessions under pressure);
 * and the decode throughput of the sessions resident at the end, both measured in this run, as a
 * ratio. Quick: stories260K; full: the ~200M-parameter benchmark model (random weights). A benchmark,
 * never a test.
 */
import { Command } from "commander";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { Engine, type EngineModel } from "../src/engine/engine.js";
import { EngineError } from "../src/engine/engine-error.js";
import { RedisKvStore } from "../src/kv/store/redis-kv-store.js";
import { SnapshotStore } from "../src/kv/store/snapshot-store.js";
import { convertHfCheckpoint } from "../src/model/conversion/convert.js";
import { defaultModelFiles } from "../src/model/default-model.js";
import { loadModel, loadModelDir } from "../src/model/load-model.js";
import { projectionStorage } from "../src/model/graph/projection-weights.js";
import { startRedis } from "../test/kv/store/support/redis-server.js";
import { BENCH_ENGINE_OPTIONS } from "./bench-engine-options.js";
import { llama200M } from "./llama-200m.js";
import { MarkdownReport } from "./markdown-report.js";
import { writeRandomCheckpoint } from "./random-checkpoint.js";

const options = new Command("kv-capacity-bench")
  .option("--quick", "stories260K and 64-token sessions instead of the ~200M model and 256-token sessions", false)
  .option("--out <file>", "also write the report (Markdown) to this file")
  .parse()
  .opts<{ quick: boolean; out?: string }>();

const PROMPT_TOKENS = options.quick ? 64 : 256;
/** The budget holds this many sessions' prompts (and a little room to decode); the store run opens three times as many. */
const SESSIONS_IN_BUDGET = 6;
const MOST_SESSIONS = 3 * SESSIONS_IN_BUDGET;
const DECODE_TOKENS = options.quick ? 16 : 4;
const GREEDY = { temperature: 0, topK: 0, topP: 1, seed: 0n };
const report = new MarkdownReport();

interface CapacityRun {
  held: number;
  refusal: string | null;
  resident: number;
  stored: number;
  decodedTokens: number;
  decodeRefusals: number;
  /** The first decode refusal's message, or null. */
  decodeRefusal: string | null;
  decodeSeconds: number;
}

/** Opens sessions until the first RESOURCE_EXHAUSTED (or MOST_SESSIONS), then decodes on every resident one in turn. */
async function capacity(engine: Engine, vocab: number): Promise<CapacityRun> {
  let seed = 11;
  const prompt = () => Array.from({ length: PROMPT_TOKENS }, () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) % vocab);
  let held = 0;
  let refusal: string | null = null;
  for (; held < MOST_SESSIONS; held++) {
    try {
      await engine.prefill({ sequenceId: `session-${held}`, tokenIds: prompt() });
    } catch (error) {
      if (!(error instanceof EngineError) || error.code !== "RESOURCE_EXHAUSTED") throw error;
      refusal = error.message;
      break;
    }
  }
  const residency = () => engine.stats().sequences.map((s) => s.residency ?? "resident");
  const before = residency();
  const resident = engine.stats().sequences.filter((s) => (s.residency ?? "resident") !== "stored").map((s) => s.sequenceId);
  let decodedTokens = 0;
  let decodeRefusals = 0;
  let decodeRefusal: string | null = null;
  const started = performance.now();
  for (const sequenceId of resident) {
    try {
      for await (const _ of engine.decode({ sequenceId, maxNewTokens: DECODE_TOKENS, sampling: GREEDY, stopTokenIds: [], ignoreEos: true })) decodedTokens++;
    } catch (error) {
      if (!(error instanceof EngineError) || error.code !== "RESOURCE_EXHAUSTED") throw error;
      decodeRefusals++;
      decodeRefusal ??= `${sequenceId} (${engine.stats().sequences.find((s) => s.sequenceId === sequenceId)?.residency ?? "resident"}): ${error.message}`;
    }
  }
  const decodeSeconds = (performance.now() - started) / 1000;
  return {
    held,
    refusal,
    resident: before.filter((r) => r !== "stored").length,
    stored: before.filter((r) => r === "stored").length,
    decodedTokens,
    decodeRefusals,
    decodeRefusal,
    decodeSeconds,
  };
}

const root = mkdtempSync(join(tmpdir(), "kvwarden-bench-capacity-"));
const redis = await startRedis();
const store = await RedisKvStore.open(redis.url);
try {
  let model: EngineModel;
  let modelName: string;
  if (options.quick) {
    model = await loadModel(await defaultModelFiles(), { executionProvider: "cpu", intraOpThreads: 1 });
    modelName = "stories260K";
  } else {
    const shape = llama200M(12);
    writeRandomCheckpoint(join(root, "hf"), shape, 200);
    await convertHfCheckpoint(join(root, "hf"), join(root, "model"), { projections: projectionStorage("float32") });
    model = await loadModelDir(join(root, "model"), { executionProvider: "cpu", intraOpThreads: 1 });
    modelName = "llama-200m shape (12 layers, random weights)";
  }
  const vocab = model.config.vocabSize;
  // One session's bytes, measured: the budget is SESSIONS_IN_BUDGET of them plus half of one (room to decode).
  const probe = new Engine(model, { ...BENCH_ENGINE_OPTIONS, kvBudgetBytes: 2 ** 31, maxSequenceTokens: 8192 });
  await probe.prefill({ sequenceId: "probe", tokenIds: Array.from({ length: PROMPT_TOKENS }, (_, i) => i % vocab) });
  const sessionBytes = probe.stats({ sequenceId: "probe" }).sequences[0].kvBytes;
  probe.close();
  const engineOptions = { ...BENCH_ENGINE_OPTIONS, kvBudgetBytes: Math.floor((SESSIONS_IN_BUDGET + 0.5) * sessionBytes), maxSequenceTokens: 8192 };

  const memoryOnly = new Engine(model, engineOptions);
  const withoutStore = await capacity(memoryOnly, vocab);
  memoryOnly.close();
  const snapshots = new SnapshotStore({ store, prefix: "bench", model: "capacity", replica: "bench", leaseMs: 60_000, ttlMs: 600_000 });
  const stored = new Engine(model, { ...engineOptions, kvStore: { snapshots, leaseMs: 60_000 } });
  const withStore = await capacity(stored, vocab);
  stored.close();

  const rate = (run: CapacityRun) => run.decodedTokens / run.decodeSeconds;
  report.print(`# Sessions held under one --kv-budget, with and without the KV store${options.quick ? " (--quick)" : ""}`);
  report.print();
  report.print(`Command: \`node dist/bench/kv-capacity-bench.js${options.quick ? " --quick" : ""}\`. ${modelName}, sessions of ${PROMPT_TOKENS} prompt tokens (${(sessionBytes / 2 ** 20).toFixed(2)} MiB of KV each), no eviction; --kv-budget ${(engineOptions.kvBudgetBytes / 2 ** 20).toFixed(1)} MiB (${SESSIONS_IN_BUDGET}.5 sessions); the store a local redis-server; at most ${MOST_SESSIONS} sessions opened. Then ${DECODE_TOKENS} greedy tokens on each session resident at the end, one after another. ${cpus().length} CPUs, load average ${loadavg()[0].toFixed(1)}.`);
  report.print();
  report.print("| server | sessions held before RESOURCE_EXHAUSTED | resident / stored | resident decode tok/s | decode refusals | vs memory only |");
  report.print("|---|---|---|---|---|---|");
  const row = (name: string, run: CapacityRun) =>
    report.print(`| ${name} | ${run.held}${run.refusal ? "" : ` (all opened, none refused)`} | ${run.resident} / ${run.stored} | ${rate(run).toFixed(1)} | ${run.decodeRefusals} | ${(rate(run) / rate(withoutStore)).toFixed(2)}x |`);
  row("memory only", withoutStore);
  row("with --kv-store (offloads idle sessions under pressure)", withStore);
  if (withoutStore.refusal) {
    report.print();
    report.print(`Memory only, session ${withoutStore.held + 1} was refused: \`${withoutStore.refusal}\``);
  }
  for (const [name, run] of [["memory only", withoutStore], ["with --kv-store", withStore]] as const) {
    if (run.decodeRefusal) report.print(`\n${name}, the first decode refused: \`${run.decodeRefusal}\``);
  }
  if (options.out) report.write(options.out);
} finally {
  await store.close();
  await redis.stop();
  rmSync(root, { recursive: true, force: true });
}
