/**
 * `make bench`, continuous batching on the ~200M bench Llama (issue 20, target 4): the aggregate decode
 * tokens/s of 8 concurrent streams against 1 (goal: at least 5x, as a bandwidth-bound step reads the
 * weights once for the whole batch), kvwarden's decode batcher against llama.cpp's several sequences in
 * one context (node-llama-cpp, the same weights as GGUF F32), 1 thread each, in the same run. Each side
 * takes an untimed round first. A benchmark, never a test.
 */
import { Command } from "commander";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { Engine } from "../src/engine/engine.js";
import { BENCH_ENGINE_OPTIONS } from "./bench-engine-options.js";
import { decodeConcurrently } from "./batched-decode.js";
import { GgmlType } from "./ggml-blocks.js";
import { llama200MFiles } from "./llama-200m-model.js";
import { llamaCppStreams } from "./llama-cpp-streams.js";
import { writeLlamaGguf } from "./llama-gguf.js";
import { MarkdownReport } from "./markdown-report.js";

const options = new Command("batching-bench")
  .option("--quick", "2 layers instead of 12, 8 tokens per stream", false)
  .option("--threads <n>", "threads for each engine", (v) => Number(v), 1)
  .option("--out <file>", "also write the report (Markdown) to this file")
  .parse()
  .opts();

const LAYERS = options.quick ? 2 : 12;
const TOKENS = options.quick ? 8 : 32;
const STREAMS = [1, 8];

const files = await llama200MFiles(LAYERS);
try {
  const model = await files.load(options.threads);
  const engine = new Engine(model, { ...BENCH_ENGINE_OPTIONS, maxBatchSize: 8 });
  const kvwarden: Record<number, number> = {};
  for (const streams of STREAMS) {
    await decodeConcurrently(engine, streams, 2, `warm${streams}`); // untimed: the batch's first shapes
    kvwarden[streams] = (await decodeConcurrently(engine, streams, TOKENS, `timed${streams}`)).tokensPerSecond;
    console.error(`kvwarden ${streams} streams: ${kvwarden[streams].toFixed(1)} tok/s`);
  }
  engine.close();
  await model.runner.release();

  const gguf = join(files.dir, "..", "F32.gguf");
  writeLlamaGguf(files.hfDir, gguf, GgmlType.F32);
  const { bosId } = model.tokenizer;
  const llamaCpp: Record<number, number> = {};
  for (const streams of STREAMS) {
    const prompts = Array.from({ length: streams }, (_, i) => [bosId, 300 + i]);
    llamaCpp[streams] = (await llamaCppStreams(gguf, prompts, TOKENS, options.threads)).tokensPerSecond;
    console.error(`llama.cpp ${streams} sequences: ${llamaCpp[streams].toFixed(1)} tok/s`);
  }

  const report = new MarkdownReport();
  report.print(`# Continuous batching: 8 streams against 1 (${options.quick ? "quick" : "full"})`);
  report.print();
  report.print(
    `~200M bench Llama (${LAYERS} layers, float32, random weights; llama.cpp: the same weights as GGUF F32), ${TOKENS} greedy tokens per stream after a 2-token prompt, ${options.threads} thread(s) each; ${cpus().length} CPUs, load average ${loadavg()[0].toFixed(1)}. Command: \`node dist/bench/batching-bench.js${options.quick ? " --quick" : ""}\`.`,
  );
  report.print();
  report.print("| engine | 1 stream tok/s | 8 streams tok/s (aggregate) | 8 / 1 (goal >= 5x) |");
  report.print("|---|---|---|---|");
  report.print(`| kvwarden (decode batcher, --max-batch-size 8) | ${kvwarden[1].toFixed(1)} | ${kvwarden[8].toFixed(1)} | **${(kvwarden[8] / kvwarden[1]).toFixed(2)}x** |`);
  report.print(`| llama.cpp (node-llama-cpp, 8 sequences in one context) | ${llamaCpp[1].toFixed(1)} | ${llamaCpp[8].toFixed(1)} | **${(llamaCpp[8] / llamaCpp[1]).toFixed(2)}x** |`);
  report.print();
  report.print(`kvwarden / llama.cpp, 8 streams: ${(kvwarden[8] / llamaCpp[8]).toFixed(2)}x the tokens/s.`);
  if (options.out) report.write(options.out);
} finally {
  files.remove();
}
