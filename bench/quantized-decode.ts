/**
 * `make bench`, quantized weights: the decode step of a ~200M-parameter
 * Llama-shaped checkpoint with random weights (written at bench time into a
 * temporary folder in Hugging Face safetensors layout), converted float32,
 * int8 and int4, timed through the engine at a modest context, against the
 * memory-bandwidth floor: the weight bytes one step reads divided by the
 * measured read bandwidth. A benchmark, never a test.
 */
import { Command } from "commander";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import ort from "onnxruntime-node";
import { Engine } from "../src/engine/engine.js";
import { BENCH_ENGINE_OPTIONS } from "./bench-engine-options.js";
import { convertHfCheckpoint } from "../src/model/conversion/convert.js";
import { readManifest } from "../src/model/conversion/converted-model.js";
import { loadModelDir } from "../src/model/load-model.js";
import { projectionStorage } from "../src/model/graph/projection-weights.js";
import type { WeightDtype } from "../src/model/graph/weight-layout.js";
import { llama200M } from "./llama-200m.js";
import { ReadBandwidth, type BandwidthReading } from "./memory-bandwidth.js";
import { writeRandomCheckpoint } from "./random-checkpoint.js";

const options = new Command("quantized-decode")
  .option("--quick", "2 layers instead of 12, one round of few steps", false)
  .option("--threads <n>", "onnxruntime intra-op threads", (v) => Number(v), 1)
  .option("--cached <n>", "tokens in the cache when the timed steps start", (v) => Number(v), 128)
  .option("--out <file>", "also write the report (Markdown) to this file")
  .parse()
  .opts();

const MODEL = llama200M(options.quick ? 2 : 12);
const DTYPES: WeightDtype[] = ["float32", "int8", "int4"];
const rounds = options.quick ? 1 : 3;
const stepsPerRound = options.quick ? 8 : 24;
const greedy = { temperature: 0, topK: 0, topP: 0, seed: 0n };
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const fmt = (n: number, digits = 1) => n.toFixed(digits);
const mb = (bytes: number) => fmt(bytes / 1e6);
const lines: string[] = [];
const print = (line = "") => {
  console.log(line);
  lines.push(line);
};

const { hidden: dim, heads, kvHeads, layers, vocab, intermediate } = MODEL;
const headSize = dim / heads;

const root = mkdtempSync(join(tmpdir(), "kvwarden-bench-quantized-"));
try {
  const hfDir = join(root, "hf");
  let started = performance.now();
  const parameters = writeRandomCheckpoint(hfDir, MODEL, 200);
  const writeSeconds = (performance.now() - started) / 1000;

  const converted = [];
  for (const dtype of DTYPES) {
    const out = join(root, dtype);
    started = performance.now();
    const manifest = await convertHfCheckpoint(hfDir, out, { projections: projectionStorage(dtype) });
    const seconds = (performance.now() - started) / 1000;
    const stored = manifest.tensors.reduce((n, t) => n + t.length, 0);
    // A step reads every weight but the embedding, of which it gathers one row.
    const readPerToken = stored - manifest.tensors.find((t) => t.name === "embedding")!.length + dim * 4;
    const last = manifest.tensors.at(-1)!;
    converted.push({ dtype, out, seconds, fileBytes: last.offset + last.length, readPerToken, config: readManifest(out).config });
  }

  const bandwidth = await ReadBandwidth.create(options.threads);

  const engines = await Promise.all(
    converted.map(async (c) => {
      started = performance.now();
      const model = await loadModelDir(c.out, { executionProvider: "cpu", intraOpThreads: options.threads });
      const loadSeconds = (performance.now() - started) / 1000;
      const engine = new Engine(model, { ...BENCH_ENGINE_OPTIONS, kvBudgetBytes: 2 ** 30, maxSequenceTokens: 8192, allowPastContext: false });
      return { ...c, model, engine, loadSeconds, stepMs: [] as number[], prefillMs: [] as number[], overFloor: [] as number[] };
    }),
  );

  // Interleaved: each round measures the bandwidth and runs every dtype once, so a slow spell of the
  // shared machine hits all of them; each round's steps are judged by that round's bandwidth.
  const readings: BandwidthReading[][] = [];
  const prompt = Array.from({ length: options.cached }, (_, i) => (i === 0 ? 256 : 300 + ((i * 7919) % (vocab - 300))));
  for (let round = -1; round < rounds; round++) {
    const reading = await bandwidth.measure(3);
    if (round >= 0) readings.push(reading);
    const roundBandwidth = Math.max(...reading.map((b) => b.bytesPerSecond));
    for (const e of engines) {
      const sequenceId = `round-${round}`;
      let last = performance.now();
      await e.engine.prefill({ sequenceId, tokenIds: prompt });
      const prefillMs = performance.now() - last;
      const gaps: number[] = [];
      last = performance.now();
      for await (const _ of e.engine.decode({ sequenceId, maxNewTokens: stepsPerRound + 1, sampling: greedy, stopTokenIds: [], ignoreEos: true })) {
        const now = performance.now();
        gaps.push(now - last);
        last = now;
      }
      await e.engine.release(sequenceId);
      if (round < 0) continue; // warm-up
      e.prefillMs.push(prefillMs);
      const steps = gaps.slice(1); // the first token comes from the prefill's logits
      e.stepMs.push(...steps);
      e.overFloor.push(median(steps) / ((e.readPerToken / roundBandwidth) * 1000));
    }
  }

  await bandwidth.release();
  const methods = readings[0].map((r, i) => ({ method: r.method, bytesPerSecond: readings.map((round) => round[i].bytesPerSecond) }));
  const bestBandwidth = Math.max(...methods.flatMap((m) => m.bytesPerSecond));
  const kvReadPerToken = layers * kvHeads * options.cached * headSize * 2 * 4;
  print(`# Quantized weights: decode step vs the memory-bandwidth floor (${options.quick ? "quick" : "full"})`);
  print();
  print(`Command: \`node dist/bench/quantized-decode.js${options.quick ? " --quick" : ""}\` (\`make bench${options.quick ? "-quick" : ""}\`), ${options.threads} intra-op thread(s).`);
  print(
    `Model: random Llama, dim ${dim}, ${layers} layers, ${heads} heads / ${kvHeads} KV heads of ${headSize}, MLP ${intermediate}, vocab ${vocab}, untied: ${fmt(parameters / 1e6)}M parameters; written as BF16 safetensors in ${fmt(writeSeconds)} s.`,
  );
  print(`Machine: ${cpus()[0]?.model ?? "unknown"} x${cpus().length}, ${fmt(totalmem() / 2 ** 30, 0)} GiB, Node ${process.version}, onnxruntime-node ${ort.env.versions.common}, load average at the end ${loadavg().map((l) => fmt(l, 2)).join(" ")}.`);
  print();
  print(`Read bandwidth, best of 3 runs in each round (per round: ${rounds === 1 ? "one round" : "the rounds in order"}); the floor uses the largest reading, ${fmt(bestBandwidth / 1e9, 2)} GB/s:`);
  for (const m of methods) print(`- ${m.method}: ${m.bytesPerSecond.map((b) => fmt(b / 1e9, 2)).join(", ")} GB/s`);
  print();
  print(
    `Decode steps at ${options.cached}-${options.cached + stepsPerRound} cached tokens through the engine (greedy, attention statistics on), ${rounds} interleaved round(s) of ${stepsPerRound} steps after a warm-up round. Floor = weight bytes read per step / bandwidth; the KV cache adds ${mb(kvReadPerToken)} MB a step. "Median / floor" and "best / floor" use the best bandwidth of all rounds (on a busy machine the best step and the best bandwidth are the least disturbed samples); "per round" is the median of each round's step median over that round's floor.`,
  );
  print();
  print("| weights | weights.bin MB | read per step MB | floor ms | step ms, median | step ms, best | median / floor | best / floor | per round | tokens/s | prefill ms | convert s | load s |");
  print("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
  for (const e of engines) {
    const floorMs = (e.readPerToken / bestBandwidth) * 1000;
    const stepMs = median(e.stepMs);
    print(
      `| ${e.dtype} | ${mb(e.fileBytes)} | ${mb(e.readPerToken)} | ${fmt(floorMs)} | ${fmt(stepMs)} | ${fmt(Math.min(...e.stepMs))} | ${fmt(stepMs / floorMs, 2)} | ${fmt(Math.min(...e.stepMs) / floorMs, 2)} | ${fmt(median(e.overFloor), 2)} | ${fmt(1000 / stepMs)} | ${fmt(median(e.prefillMs), 0)} | ${fmt(e.seconds)} | ${fmt(e.loadSeconds)} |`,
    );
  }
  const float = engines[0];
  print();
  print(`Step time relative to float32: ratio of medians ${engines.map((e) => `${e.dtype} ${fmt(median(e.stepMs) / median(float.stepMs), 2)}`).join(", ")}; of bests ${engines.map((e) => `${e.dtype} ${fmt(Math.min(...e.stepMs) / Math.min(...float.stepMs), 2)}`).join(", ")}.`);
  if (options.out) writeFileSync(options.out, lines.join("\n") + "\n");
  await Promise.all(engines.map((e) => e.model.runner.release()));
} finally {
  rmSync(root, { recursive: true, force: true });
}
