/**
 * Restore against recomputation (docs/kv-store.md, "Benchmarks"): the ~200M-parameter benchmark
 * model prefills a prompt and snapkv keeps 20% of it; continuing that sequence elsewhere costs
 * either a re-prefill (recompute the prompt, evict again) or a restore (read its snapshot from a
 * local redis-server, verify, decode, fill a new sequence). Both measured in this run; the ratio
 * re-prefill / restore is the figure (goal: at least 10x at 2,048 tokens). A benchmark, never a test.
 */
import { Command } from "commander";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { Engine } from "../src/engine/engine.js";
import { RedisKvStore } from "../src/kv/store/redis-kv-store.js";
import { SnapshotStore } from "../src/kv/store/snapshot-store.js";
import { convertHfCheckpoint } from "../src/model/conversion/convert.js";
import { loadModelDir } from "../src/model/load-model.js";
import { projectionStorage } from "../src/model/graph/projection-weights.js";
import { startRedis } from "../test/kv/store/support/redis-server.js";
import { llama200M } from "./llama-200m.js";
import { MarkdownReport } from "./markdown-report.js";
import { writeRandomCheckpoint } from "./random-checkpoint.js";
import { BENCH_ENGINE_OPTIONS } from "./bench-engine-options.js";

const options = new Command("kv-restore-bench")
  .option("--quick", "2 layers and a 512-token prompt instead of 12 layers and 2,048 tokens", false)
  .option("--out <file>", "also write the report (Markdown) to this file")
  .parse()
  .opts<{ quick: boolean; out?: string }>();

const MODEL = llama200M(options.quick ? 2 : 12);
const PROMPT_TOKENS = options.quick ? 512 : 2048;
const KEPT = Math.round(PROMPT_TOKENS * 0.2);
const RUNS = options.quick ? 3 : 5;
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const report = new MarkdownReport();

const root = mkdtempSync(join(tmpdir(), "kvwarden-bench-restore-"));
const redis = await startRedis();
const store = await RedisKvStore.open(redis.url);
try {
  writeRandomCheckpoint(join(root, "hf"), MODEL, 200);
  await convertHfCheckpoint(join(root, "hf"), join(root, "model"), { projections: projectionStorage("float32") });
  const model = await loadModelDir(join(root, "model"), { executionProvider: "cpu", intraOpThreads: 1 });
  const engine = new Engine(model, { ...BENCH_ENGINE_OPTIONS, kvBudgetBytes: 2 ** 31, maxSequenceTokens: 8192 });
  const snapshots = new SnapshotStore({ store, prefix: "bench", model: "llama-200m", replica: "bench", leaseMs: 60_000, ttlMs: 600_000 });
  let seed = 7;
  const tokenIds = Array.from({ length: PROMPT_TOKENS }, () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) % MODEL.vocab);
  const eviction = { policy: "snapkv", budget: { maxTokens: KEPT }, params: {} };

  const prefillSeconds: number[] = [];
  const restoreSeconds: number[] = [];
  let storedBytes = 0;
  for (let run = 0; run < RUNS; run++) {
    let started = performance.now();
    await engine.prefill({ sequenceId: `prefilled-${run}`, tokenIds, eviction });
    prefillSeconds.push((performance.now() - started) / 1000);
    if (run === 0) {
      const lease = await snapshots.acquire("", "stored");
      storedBytes = (await snapshots.save(lease, await engine.snapshot("prefilled-0"))).bytes;
    } else {
      await engine.release(`prefilled-${run}`);
    }
    // Interleaved with the prefills, so that the machine's load falls on both alike.
    started = performance.now();
    const loaded = (await snapshots.load("", "stored"))!;
    await engine.restore(`restored-${run}`, loaded.snapshot);
    loaded.done();
    restoreSeconds.push((performance.now() - started) / 1000);
    await engine.release(`restored-${run}`);
  }
  const prefill = median(prefillSeconds);
  const restore = median(restoreSeconds);
  report.print(`# Restore vs re-prefill${options.quick ? " (--quick)" : ""}`);
  report.print();
  report.print(
    `llama-200m shape at ${MODEL.layers} layers, ${PROMPT_TOKENS}-token prompt, snapkv to ${KEPT} entries per head; snapshot ${(storedBytes / 2 ** 20).toFixed(2)} MiB on a local redis-server; median of ${RUNS}, interleaved. ${cpus().length} CPUs, load average ${loadavg()[0].toFixed(1)}.`,
  );
  report.print();
  report.print("| continue a sequence by | seconds | vs re-prefill |");
  report.print("|---|---|---|");
  report.print(`| re-prefill (recompute the prompt, snapkv again) | ${prefill.toFixed(3)} | 1x |`);
  report.print(`| restore (GET chunks, xxHash64, decode, fill) | ${restore.toFixed(3)} | ${(prefill / restore).toFixed(1)}x faster |`);
  if (options.out) report.write(options.out);
  engine.close();
} finally {
  await store.close();
  await redis.stop();
  rmSync(root, { recursive: true, force: true });
}
