/**
 * `make bench`, the llama.cpp anchor (docs/llama-cpp-anchor.md): the decode step of the ~200M
 * random Llama in kvwarden (float32, int8, int4 weights) against llama.cpp through node-llama-cpp
 * (the same weights written as GGUF F32, Q8_0, Q4_0 by the bench), 1 thread each, at several
 * cache lengths. Every engine stays loaded and the two engines of a pair alternate blocks of
 * steps, so a slow spell of the shared machine hits both; the ratio is kvwarden / llama.cpp.
 * A benchmark, never a test.
 */
import { Command } from "commander";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import ort from "onnxruntime-node";
import { Engine, type EngineModel } from "../src/engine/engine.js";
import type { KvDtype } from "../src/kv/layer-cache.js";
import { convertHfCheckpoint } from "../src/model/conversion/convert.js";
import { loadModelDir } from "../src/model/load-model.js";
import { projectionStorage } from "../src/model/graph/projection-weights.js";
import type { WeightDtype } from "../src/model/graph/weight-layout.js";
import { GgmlType } from "./ggml-blocks.js";
import { llama200M } from "./llama-200m.js";
import { LlamaCppEngine } from "./llama-cpp-engine.js";
import { writeLlamaGguf } from "./llama-gguf.js";
import { MarkdownReport } from "./markdown-report.js";
import { writeRandomCheckpoint } from "./random-checkpoint.js";
import { timedGreedyDecode } from "./timed-decode.js";
import { BENCH_ENGINE_OPTIONS } from "./bench-engine-options.js";

const options = new Command("llama-cpp-decode")
  .option("--quick", "2 layers instead of 12, 128 and 1024 cached, 2 short rounds", false)
  .option("--threads <n>", "threads of each engine", (v) => Number(v), 1)
  .option("--kv-dtype <type>", "kvwarden's KV cache: float32 (its default) or float16", "float32")
  .option("--out <file>", "also write the report (Markdown) to this file")
  .parse()
  .opts<{ quick: boolean; threads: number; kvDtype: KvDtype; out?: string }>();

const MODEL = llama200M(options.quick ? 2 : 12);
const CACHED = options.quick ? [128, 1024] : [128, 1024, 4096];
const ROUNDS = options.quick ? 3 : 9;
const STEPS = options.quick ? 8 : 16;
const PAIRS: { kvwarden: WeightDtype; gguf: GgmlType }[] = [
  { kvwarden: "float32", gguf: GgmlType.F32 },
  { kvwarden: "int8", gguf: GgmlType.Q8_0 },
  { kvwarden: "int4", gguf: GgmlType.Q4_0 },
];
const contextTokens = Math.max(...CACHED) + (ROUNDS + 1) * (STEPS + 2);
const median = (values: readonly number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const fmt = (n: number, digits = 1) => n.toFixed(digits);
const mb = (bytes: number) => fmt(bytes / 1e6);
/** The quantized bench's prompt: BOS, then ids spread over the vocabulary. */
const prompt = (length: number) => Array.from({ length }, (_, i) => (i === 0 ? 256 : 300 + ((i * 7919) % (MODEL.vocab - 300))));

interface Pair {
  name: string;
  kvwarden: { model: EngineModel; engine: Engine; readPerStepBytes: number };
  llamaCpp: { engine: LlamaCppEngine; readPerStepBytes: number };
}

interface Measured {
  pair: string;
  cached: number;
  kvwardenMs: number[];
  llamaCppMs: number[];
  /** kvwarden's block median over llama.cpp's, one per round. */
  roundRatios: number[];
  kvwardenPrefillMs: number;
  llamaCppPrefillMs: number;
}

const report = new MarkdownReport();
const root = mkdtempSync(join(tmpdir(), "kvwarden-bench-llama-cpp-"));
try {
  const hfDir = join(root, "hf");
  let started = performance.now();
  const parameters = writeRandomCheckpoint(hfDir, MODEL, 200);
  const preparing: string[] = [`checkpoint ${fmt((performance.now() - started) / 1000)} s`];

  const pairs: Pair[] = [];
  for (const { kvwarden, gguf } of PAIRS) {
    const kvDir = join(root, kvwarden);
    started = performance.now();
    const manifest = await convertHfCheckpoint(hfDir, kvDir, { projections: projectionStorage(kvwarden) });
    const ggufPath = join(root, `${GgmlType[gguf]}.gguf`);
    const converted = performance.now();
    const written = writeLlamaGguf(hfDir, ggufPath, gguf);
    preparing.push(`${kvwarden} ${fmt((converted - started) / 1000)} s`, `${GgmlType[gguf]} ${fmt((performance.now() - converted) / 1000)} s`);
    const model = await loadModelDir(kvDir, { executionProvider: "cpu", intraOpThreads: options.threads, kvDtype: options.kvDtype });
    // allowPastContext (from the bench options): 4096 cached runs past the checkpoint's 4096 positions.
    const engine = new Engine(model, { ...BENCH_ENGINE_OPTIONS, kvBudgetBytes: 2 ** 30, maxSequenceTokens: contextTokens, prefillChunkTokens: 512 });
    const stored = manifest.tensors.reduce((n, t) => n + t.length, 0);
    const embedding = manifest.tensors.find((t) => t.name === "embedding")!.length;
    pairs.push({
      name: `${GgmlType[gguf]} / ${kvwarden}`,
      kvwarden: { model, engine, readPerStepBytes: stored - embedding + embedding / MODEL.vocab },
      llamaCpp: { engine: await LlamaCppEngine.load(ggufPath, contextTokens, options.threads), readPerStepBytes: written.readPerStepBytes },
    });
  }

  const results: Measured[] = [];
  for (const cached of CACHED) {
    const tokens = prompt(cached);
    for (const pair of pairs) {
      const sequenceId = `cached-${cached}`;
      let last = performance.now();
      await pair.kvwarden.engine.prefill({ sequenceId, tokenIds: tokens });
      const kvwardenPrefillMs = performance.now() - last;
      last = performance.now();
      // llama.cpp is fed the last prompt token in its first block, as each block feeds its predecessor's last token.
      await pair.llamaCpp.engine.prefill(tokens.slice(0, -1));
      const llamaCppPrefillMs = performance.now() - last;
      const measured: Measured = { pair: pair.name, cached, kvwardenMs: [], llamaCppMs: [], roundRatios: [], kvwardenPrefillMs, llamaCppPrefillMs };
      let feed = tokens.at(-1)!;
      for (let round = -1; round < ROUNDS; round++) {
        // Alternate which engine goes first, so neither always follows the other's cache footprint.
        const order = round % 2 === 0 ? ["kvwarden", "llama.cpp"] : ["llama.cpp", "kvwarden"];
        let kvwardenGaps: number[] = [];
        let llamaCppGaps: number[] = [];
        for (const engine of order) {
          if (engine === "kvwarden") {
            kvwardenGaps = (await timedGreedyDecode(pair.kvwarden.engine, sequenceId, STEPS + 1)).gaps;
          } else {
            const block = await pair.llamaCpp.engine.greedy([feed], STEPS + 1);
            llamaCppGaps = block.gaps;
            feed = block.tokens.at(-1)!;
          }
        }
        if (round < 0) continue; // warm-up
        measured.kvwardenMs.push(...kvwardenGaps);
        measured.llamaCppMs.push(...llamaCppGaps);
        measured.roundRatios.push(median(kvwardenGaps) / median(llamaCppGaps));
      }
      await pair.kvwarden.engine.release(sequenceId);
      await pair.llamaCpp.engine.clear();
      results.push(measured);
      console.error(`${pair.name} at ${cached}: ratio ${fmt(median(measured.roundRatios), 2)}`);
    }
  }

  const { hidden, heads, kvHeads, layers, vocab, intermediate } = MODEL;
  report.print(`# Decode step against llama.cpp on the same weights (${options.quick ? "quick" : "full"})`);
  report.print();
  report.print(`Command: \`node dist/bench/llama-cpp-decode.js${options.quick ? " --quick" : ""}${options.kvDtype === "float32" ? "" : ` --kv-dtype ${options.kvDtype}`}\` (\`make bench${options.quick ? "-quick" : ""}\`), ${options.threads} thread(s) per engine.`);
  report.print(`Model: random Llama, dim ${hidden}, ${layers} layers, ${heads} heads / ${kvHeads} KV heads of ${hidden / heads}, MLP ${intermediate}, vocab ${vocab}, untied: ${fmt(parameters / 1e6)}M parameters, trained context 4096. Preparation: ${preparing.join(", ")}.`);
  report.print(
    `Engines: kvwarden (onnxruntime-node ${ort.env.versions.common}, KV cache ${options.kvDtype}, attention statistics on); llama.cpp through node-llama-cpp 3.21.1's prebuilt CPU binary (KV cache float16, flash attention off), GGUF written by the bench with every matrix in one type.`,
  );
  report.print(`Machine: ${cpus()[0]?.model ?? "unknown"} x${cpus().length}, ${fmt(totalmem() / 2 ** 30, 0)} GiB, Node ${process.version}, load average at the end ${loadavg().map((l) => fmt(l, 2)).join(" ")}.`);
  report.print();
  report.print(
    `Decode steps at each cache length, greedy: a warm-up round, then ${ROUNDS} rounds in which kvwarden and llama.cpp alternate blocks of ${STEPS} steps (the order flips each round). "Ratio" is the median over rounds of kvwarden's block median / llama.cpp's; "ratio of medians" uses all steps; "ratio of bests" compares each engine's fastest step, the least disturbed sample on a busy machine. Goal: at most 1.0. Prefill is one sample each (kvwarden's, in chunks of 512, includes its first run of each chunk shape at 128 cached).`,
  );
  report.print();
  report.print("| weights (llama.cpp / kvwarden) | weights read per step MB | cached | llama.cpp ms/step | kvwarden ms/step | ratio | ratio of medians | ratio of bests | per round | prefill ms llama.cpp / kvwarden |");
  report.print("|---|---|---|---|---|---|---|---|---|---|");
  for (const r of results) {
    const pair = pairs.find((p) => p.name === r.pair)!;
    const [llamaCppStep, kvwardenStep] = [median(r.llamaCppMs), median(r.kvwardenMs)];
    report.print(
      `| ${r.pair} | ${mb(pair.llamaCpp.readPerStepBytes)} / ${mb(pair.kvwarden.readPerStepBytes)} | ${r.cached} | ${fmt(llamaCppStep)} | ${fmt(kvwardenStep)} | **${fmt(median(r.roundRatios), 2)}** | ${fmt(kvwardenStep / llamaCppStep, 2)} | ${fmt(Math.min(...r.kvwardenMs) / Math.min(...r.llamaCppMs), 2)} | ${r.roundRatios.map((x) => fmt(x, 2)).join(" ")} | ${fmt(r.llamaCppPrefillMs, 0)} / ${fmt(r.kvwardenPrefillMs, 0)} |`,
    );
  }
  if (options.out) report.write(options.out);
  for (const pair of pairs) {
    await pair.llamaCpp.engine.release();
    await pair.kvwarden.model.runner.release();
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}
