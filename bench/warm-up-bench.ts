/**
 * `make bench`, start-up warm-up (issue 20, target 3): on the ~200M bench Llama, a Prefill's time on a
 * freshly loaded model without warm-up (onnxruntime's first run of each chunk shape), on one warmed by
 * `Engine.warmUp` (as `kvwarden serve` does before readiness), and steady (the same Prefill again), each
 * model loaded anew. Ratios against the steady Prefill of the same run. A benchmark, never a test.
 */
import { Command } from "commander";
import { cpus, loadavg } from "node:os";
import { Engine } from "../src/engine/engine.js";
import { BENCH_ENGINE_OPTIONS } from "./bench-engine-options.js";
import { llama200MFiles } from "./llama-200m-model.js";
import { MarkdownReport } from "./markdown-report.js";

const options = new Command("warm-up-bench")
  .option("--quick", "2 layers instead of 12, 256-token prompts", false)
  .option("--threads <n>", "onnxruntime intra-op threads", (v) => Number(v), 1)
  .option("--out <file>", "also write the report (Markdown) to this file")
  .parse()
  .opts();

const LAYERS = options.quick ? 2 : 12;
const PROMPT = options.quick ? 256 : 512;
const prompt = (offset: number) => Array.from({ length: PROMPT }, (_, i) => 1 + ((i * 31 + offset) % 31_000));
const fmt = (n: number, digits = 2) => n.toFixed(digits);

async function prefillMs(engine: Engine, sequenceId: string): Promise<number> {
  const started = performance.now();
  await engine.prefill({ sequenceId, tokenIds: prompt(sequenceId.length) });
  const ms = performance.now() - started;
  await engine.release(sequenceId);
  return ms;
}

const files = await llama200MFiles(LAYERS);
try {
  // Cold: the first Prefill on a fresh load, then the same again (steady).
  const coldModel = await files.load(options.threads);
  const cold = new Engine(coldModel, BENCH_ENGINE_OPTIONS);
  const coldFirst = await prefillMs(cold, "a");
  const steady = [await prefillMs(cold, "bb"), await prefillMs(cold, "ccc")];
  cold.close();
  await coldModel.runner.release();
  // Warmed: a fresh load, warmed up as serve does, then the first Prefill.
  const warmModel = await files.load(options.threads);
  const warm = new Engine(warmModel, BENCH_ENGINE_OPTIONS);
  let started = performance.now();
  const shapes = await warm.warmUp();
  const warmUpMs = performance.now() - started;
  const warmFirst = await prefillMs(warm, "a");
  steady.push(await prefillMs(warm, "bb"));
  warm.close();
  await warmModel.runner.release();

  const steadyMs = [...steady].sort((a, b) => a - b)[Math.floor(steady.length / 2)];
  const report = new MarkdownReport();
  report.print(`# Warm-up: the first Prefill of a chunk shape (${options.quick ? "quick" : "full"})`);
  report.print();
  report.print(
    `~200M bench Llama (${LAYERS} layers, float32, random weights), ${PROMPT}-token Prefill in chunks of ${BENCH_ENGINE_OPTIONS.prefillChunkTokens}, ${options.threads} intra-op thread(s); ${cpus().length} CPUs, load average ${loadavg()[0].toFixed(1)}. Command: \`node dist/bench/warm-up-bench.js${options.quick ? " --quick" : ""}\`.`,
  );
  report.print();
  report.print("| Prefill | ms | / steady |");
  report.print("|---|---|---|");
  report.print(`| first on a fresh load, no warm-up | ${fmt(coldFirst, 0)} | **${fmt(coldFirst / steadyMs)}x** |`);
  report.print(`| first on a fresh load after warm-up | ${fmt(warmFirst, 0)} | **${fmt(warmFirst / steadyMs)}x** |`);
  report.print(`| steady (median of ${steady.length}) | ${fmt(steadyMs, 0)} | 1.00x |`);
  report.print();
  report.print(`Warm-up at start-up: ${fmt(warmUpMs, 0)} ms (${shapes.map((s) => `${s.tokens} tokens onto ${s.past}: ${s.ms} ms`).join("; ")}).`);
  if (options.out) report.write(options.out);
} finally {
  files.remove();
}
