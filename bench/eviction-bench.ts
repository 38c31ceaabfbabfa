/**
 * `make bench-eviction`: how long each policy's eviction takes at cache
 * lengths 512, 2048 and 8192 (past the model's trained context), as a share
 * of the time it took to prefill the same prompt, in process on the default
 * model (`npm run bench:eviction -- --quick`: 512 and 2048 only). Eviction is
 * Engine.evict: checking the request, the policy's plan and compacting the
 * cache. Prints medians as a Markdown table; never a test.
 */
import { Command } from "commander";
import { cpus, loadavg } from "node:os";
import { Engine } from "../src/engine/engine.js";
import { BENCH_ENGINE_OPTIONS } from "./bench-engine-options.js";
import { defaultModelFiles } from "../src/model/default-model.js";
import { loadModel } from "../src/model/load-model.js";
import type { EvictionSpec } from "../src/policies/policy.js";
import { POLICIES } from "../src/policies/registry.js";

const options = new Command("bench-eviction")
  .option("--quick", "one round, lengths 512 and 2048 only", false)
  .option("--threads <n>", "onnxruntime intra-op threads", (v) => Number(v), 1)
  .parse()
  .opts();

const lengths = options.quick ? [512, 2048] : [512, 2048, 8192];
/** An 8192-token prefill takes tens of seconds on one thread, and every policy needs its own: one round there. */
const roundsAt = (length: number) => (options.quick || length >= 8192 ? 1 : 3);
/** Budgets are per head (C = max(1, floor(T * f))); a fifth of the prompt evicts at every length and is above every default minimum. */
const KEEP = 0.2;

const specOf = (policy: string, params: EvictionSpec["params"] = {}): EvictionSpec => ({ policy, budget: { keepFraction: KEEP }, params, seed: 1n });
/** Every registered policy, and AdaKV over PyramidKV as well as over SnapKV. */
const CASES = [
  ...[...POLICIES.keys()].map((policy) => ({ label: policy, spec: specOf(policy) })),
  { label: "adakv (pyramidkv)", spec: specOf("adakv", { basePolicy: "pyramidkv" }) },
];

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

const model = await loadModel(await defaultModelFiles(), { executionProvider: "cpu", intraOpThreads: options.threads });
const engine = new Engine(model, BENCH_ENGINE_OPTIONS);
const prompt = (n: number) => Array.from({ length: n }, (_, i) => (i === 0 ? 1 : 3 + ((i * 7919) % 500)));

/** Per length: every prefill's time, and per policy its evictions' times (ms). */
const prefillMs = new Map<number, number[]>();
const evictMs = new Map<string, number[]>();

/** Prefills the prompt and evicts it with each policy in turn, `rounds` times; records the times when `record`. */
async function run(length: number, rounds: number, record: boolean): Promise<void> {
  const tokenIds = prompt(length);
  for (let round = 0; round < rounds; round++) {
    // Each policy needs the whole prompt cached, so each gets its own prefill; all of them time the prefill.
    for (const { label, spec } of CASES) {
      const start = performance.now();
      await engine.prefill({ sequenceId: "bench", tokenIds });
      const prefilled = performance.now();
      const outcome = await engine.evict("bench", spec);
      const evicted = performance.now();
      if (spec.policy !== "none" && !outcome.applied) throw new Error(`${label} evicted nothing at ${length}: ${outcome.detail}`);
      await engine.release("bench");
      if (!record) continue;
      prefillMs.set(length, [...(prefillMs.get(length) ?? []), prefilled - start]);
      evictMs.set(`${label}@${length}`, [...(evictMs.get(`${label}@${length}`) ?? []), evicted - prefilled]);
    }
  }
}

// A short untimed pass first, so the JIT has compiled the policies before the first timed length.
await run(256, 1, false);
for (const length of lengths) await run(length, roundsAt(length), true);

const fmt = (ms: number) => (ms < 10 ? ms.toFixed(2) : ms.toFixed(0));
const share = (ms: number, length: number) => `${((100 * ms) / median(prefillMs.get(length)!)).toFixed(1)}%`;
const roundsText = lengths.map((n) => `${roundsAt(n)} @${n}`).join(", ");
console.log(`kvwarden eviction bench (${options.quick ? "quick" : "full"}): ${model.config.name}, keep_fraction ${KEEP}, rounds ${roundsText}, ${options.threads} thread(s)`);
console.log(`machine: ${cpus()[0]?.model ?? "unknown"} x${cpus().length}, node ${process.version}, load ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
console.log("");
console.log(`| policy | ${lengths.map((n) => `evict ms @${n} | % of prefill`).join(" | ")} |`);
console.log(`|---|${lengths.map(() => "---|---").join("|")}|`);
console.log(`| (prefill) | ${lengths.map((n) => `${fmt(median(prefillMs.get(n)!))} | 100%`).join(" | ")} |`);
for (const { label } of CASES) {
  const cells = lengths.map((n) => {
    const ms = median(evictMs.get(`${label}@${n}`)!);
    return `${fmt(ms)} | ${share(ms, n)}`;
  });
  console.log(`| ${label} | ${cells.join(" | ")} |`);
}

engine.close();
await model.runner.release();
