/**
 * `make bench`, event-loop stalls that do not stack: N Evicts of long sequences at once (stories260K,
 * simlayerkv, 2,000 tokens each) against one alone, in one engine in this process, with a 1 ms
 * timer measuring the longest gap between its ticks. Eviction plans run in slices shared by every
 * call (src/numerics/sliced-work.ts), so N evictions at once should hold the loop about as long as
 * one: the ratio of the longest gaps is the figure. Their total time is reported beside it. A
 * benchmark, never a test.
 */
import { Command } from "commander";
import { cpus, loadavg } from "node:os";
import { Engine } from "../src/engine/engine.js";
import { defaultModelFiles } from "../src/model/default-model.js";
import { loadModel } from "../src/model/load-model.js";
import { BENCH_ENGINE_OPTIONS } from "./bench-engine-options.js";
import { MarkdownReport } from "./markdown-report.js";

const options = new Command("concurrent-evictions-bench")
  .option("--quick", "1 and 8 evictions at once, 3 rounds", false)
  .option("--out <file>", "also write the report (Markdown) to this file")
  .parse()
  .opts();

const COUNTS = options.quick ? [1, 8] : [1, 4, 8, 16];
const ROUNDS = options.quick ? 3 : 7;
const TOKENS = 2_000;
const PROMPT = Array.from({ length: TOKENS }, (_, i) => (i === 0 ? 1 : 3 + ((i * 7919) % 500)));
/** Names snapkv without evicting, so that each sequence keeps the recent queries simlayerkv scores. */
const KEEP_QUERIES = { policy: "snapkv", budget: { maxTokens: 1_000_000 }, params: { window: 32 } };
const EVICTION = { policy: "simlayerkv", budget: { maxTokens: 256 }, params: {} };
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

const model = await loadModel(await defaultModelFiles(), { executionProvider: "cpu", intraOpThreads: 1 });
const engine = new Engine(model, BENCH_ENGINE_OPTIONS);

/** One round: `count` sequences prefilled, then evicted all at once; the longest gap between 1 ms ticks meanwhile, and how long they took. */
async function round(count: number): Promise<{ longestGapMs: number; tookMs: number }> {
  const ids = Array.from({ length: count }, (_, i) => `s${i}`);
  for (const sequenceId of ids) await engine.prefill({ sequenceId, tokenIds: PROMPT, eviction: KEEP_QUERIES });
  let last = performance.now();
  let longestGapMs = 0;
  const ticks = setInterval(() => {
    const now = performance.now();
    longestGapMs = Math.max(longestGapMs, now - last);
    last = now;
  }, 1);
  const started = performance.now();
  await Promise.all(ids.map((sequenceId) => engine.evict(sequenceId, EVICTION)));
  const tookMs = performance.now() - started;
  clearInterval(ticks);
  for (const sequenceId of ids) await engine.release(sequenceId);
  return { longestGapMs, tookMs };
}

await round(1); // warm-up: compiled before timing
const report = new MarkdownReport();
report.print(`# Evictions at once: the event loop's longest stall (${options.quick ? "quick" : "full"})`);
report.print();
report.print(`Command: \`node dist/bench/concurrent-evictions-bench.js${options.quick ? " --quick" : ""}\`; stories260K, ${cpus().length} CPUs, load average ${loadavg()[0].toFixed(1)}.`);
report.print(`Each round prefills N sequences of ${TOKENS} tokens, then evicts them all at once with simlayerkv to 256 entries a head; a 1 ms timer records the longest gap between its ticks. Medians of ${ROUNDS} rounds, the counts interleaved.`);
report.print();
const results = new Map<number, { gaps: number[]; took: number[] }>(COUNTS.map((count) => [count, { gaps: [], took: [] }]));
for (let r = 0; r < ROUNDS; r++) {
  for (const count of COUNTS) {
    const { longestGapMs, tookMs } = await round(count);
    results.get(count)!.gaps.push(longestGapMs);
    results.get(count)!.took.push(tookMs);
  }
}
const alone = median(results.get(1)!.gaps);
report.print("| evictions at once | longest stall | against one alone | all of them took |");
report.print("|---|---|---|---|");
for (const [count, { gaps, took }] of results) {
  report.print(`| ${count} | ${median(gaps).toFixed(1)} ms | ${(median(gaps) / alone).toFixed(2)}x | ${median(took).toFixed(0)} ms |`);
}
if (options.out) report.write(options.out);
engine.close();
await model.runner.release();
