/**
 * The ~200M-parameter random Llama of the quantized bench, served with `--execution-provider webgpu`
 * (KV cache on the device) next to the CPU path, in interleaved rounds: prefill, and decode steps at
 * several cache lengths, for each weight dtype that converts. A step of this size is bound by
 * memory bandwidth, so on a real GPU this says what the device path buys; on lavapipe (Vulkan on the
 * CPU) it only proves the path runs. Greedy tokens of both paths are compared and reported, not
 * asserted: random weights give near-flat logits, where float rounding may flip an argmax.
 * A benchmark, never a test. `tools/device-check.sh` runs it on a GPU machine.
 */
import { Command } from "commander";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import ort from "onnxruntime-node";
import { Engine } from "../src/engine/engine.js";
import { BENCH_ENGINE_OPTIONS } from "./bench-engine-options.js";
import { convertHfCheckpoint } from "../src/model/conversion/convert.js";
import { loadModelDir } from "../src/model/load-model.js";
import { projectionStorage } from "../src/model/graph/projection-weights.js";
import type { WeightDtype } from "../src/model/graph/weight-layout.js";
import type { ExecutionProvider } from "../src/model/runners/model-runner.js";
import { llama200M } from "./llama-200m.js";
import { MarkdownReport } from "./markdown-report.js";
import { writeRandomCheckpoint } from "./random-checkpoint.js";
import { timedGreedyDecode } from "./timed-decode.js";

const list = (v: string) => v.split(",").map((s) => s.trim()).filter(Boolean);
const options = new Command("webgpu-large-decode")
  .option("--quick", "2 layers instead of 12, one round of few steps at 128 cached", false)
  .option("--dtypes <list>", "weight dtypes to convert and serve", list, ["float32", "int8", "int4"])
  .option("--cached <list>", "cache lengths at which decode steps are timed", list, ["128", "1024"])
  .option("--threads <n>", "onnxruntime intra-op threads of the CPU path", (v) => Number(v), 1)
  .option("--out <file>", "also write the report (Markdown) to this file")
  .parse()
  .opts();

const MODEL = llama200M(options.quick ? 2 : 12);
const rounds = options.quick ? 1 : 3;
const steps = options.quick ? 4 : 16;
const cachedLengths = (options.quick ? ["128"] : (options.cached as string[])).map(Number);
const prefillTokens = options.quick ? 128 : 512;
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const fmt = (n: number, digits = 2) => n.toFixed(digits);
const report = new MarkdownReport();
const print = (line = "") => report.print(line);
const prompt = (n: number) => Array.from({ length: n }, (_, i) => (i === 0 ? 256 : 300 + ((i * 7919) % (MODEL.vocab - 300))));
const engineOn = async (dir: string, executionProvider: ExecutionProvider) =>
  new Engine(await loadModelDir(dir, { executionProvider, intraOpThreads: options.threads }), { ...BENCH_ENGINE_OPTIONS, maxSequenceTokens: 8192 });


/** How many tokens two runs share before their first difference. */
function agreedPrefix(a: number[], b: number[]): number {
  const first = a.findIndex((t, i) => t !== b[i]);
  return first === -1 ? a.length : first;
}

interface Row {
  dtype: WeightDtype;
  failure?: string;
  adapter?: string;
  prefillMs?: Record<"cpu" | "gpu", number>;
  stepMs?: { cached: number; cpu: number; gpu: number }[];
  agreeing?: string;
}

async function measure(dtype: WeightDtype, dir: string): Promise<Row> {
  let gpu: Engine;
  try {
    gpu = await engineOn(dir, "webgpu");
  } catch (error) {
    return { dtype, failure: (error as Error).message.split("\n")[0] };
  }
  const cpu = await engineOn(dir, "cpu");
  const sides = { cpu, gpu } as const;
  const prefill: Record<"cpu" | "gpu", number[]> = { cpu: [], gpu: [] };
  const stepTimes = new Map(cachedLengths.map((n) => [n, { cpu: [] as number[], gpu: [] as number[] }]));
  let agreeing = 0;
  let compared = 0;
  try {
    for (let round = -1; round < rounds; round++) {
      for (const cached of cachedLengths) {
        const chosen: Record<string, number[]> = {};
        for (const name of ["cpu", "gpu"] as const) {
          const engine = sides[name];
          await engine.prefill({ sequenceId: "steps", tokenIds: prompt(cached) });
          const run = await timedGreedyDecode(engine, "steps", steps + 1);
          await engine.release("steps");
          chosen[name] = run.tokens;
          if (round >= 0) stepTimes.get(cached)![name].push(median(run.gaps));
        }
        if (round < 0) continue;
        compared += chosen.cpu.length;
        agreeing += agreedPrefix(chosen.cpu, chosen.gpu);
      }
      for (const name of ["cpu", "gpu"] as const) {
        const start = performance.now();
        await sides[name].prefill({ sequenceId: "prefill", tokenIds: prompt(prefillTokens) });
        const ms = performance.now() - start;
        await sides[name].release("prefill");
        if (round >= 0) prefill[name].push(ms);
      }
    }
    return {
      dtype,
      adapter: gpu.model.runner.deviceCache?.adapter,
      prefillMs: { cpu: median(prefill.cpu), gpu: median(prefill.gpu) },
      stepMs: cachedLengths.map((cached) => ({ cached, cpu: median(stepTimes.get(cached)!.cpu), gpu: median(stepTimes.get(cached)!.gpu) })),
      agreeing: `${agreeing}/${compared}`,
    };
  } finally {
    for (const engine of [cpu, gpu]) {
      engine.close();
      await engine.model.runner.release();
    }
  }
}

function printRow(row: Row): void {
  if (row.failure) {
    print(`| ${row.dtype} | not served on WebGPU: ${row.failure.replaceAll("|", "/")} | | | |`);
    return;
  }
  const { cpu, gpu } = row.prefillMs!;
  print(`| ${row.dtype} | prefill ${prefillTokens} tokens, ms | ${fmt(cpu, 1)} | ${fmt(gpu, 1)} | ${fmt(gpu / cpu)}x |`);
  for (const s of row.stepMs!) print(`| ${row.dtype} | decode step at ${s.cached} cached, ms | ${fmt(s.cpu)} | ${fmt(s.gpu)} | ${fmt(s.gpu / s.cpu)}x |`);
  print(`| ${row.dtype} | greedy tokens equal on both paths, up to each run's first difference | | ${row.agreeing} | |`);
}

// The report is written after each dtype, so a run stopped at its time limit keeps what it measured.
const save = () => options.out && report.write(options.out);
const root = mkdtempSync(join(tmpdir(), "kvwarden-bench-webgpu-large-"));
try {
  const hfDir = join(root, "hf");
  const parameters = writeRandomCheckpoint(hfDir, MODEL, 200);
  const { hidden, heads, kvHeads, layers, intermediate, vocab } = MODEL;
  print(`# kvwarden bench, WebGPU on the ~200M model (${options.quick ? "quick" : "full"})`);
  print();
  print(`Command: \`node dist/bench/webgpu-large-decode.js${options.quick ? " --quick" : ""}\` (\`tools/device-check.sh\` on a GPU machine). ${rounds} interleaved round(s) after a warm-up, medians.`);
  print(`Model: random Llama, dim ${hidden}, ${layers} layers, ${heads} heads / ${kvHeads} KV heads of ${hidden / heads}, MLP ${intermediate}, vocab ${vocab}: ${fmt(parameters / 1e6, 1)}M parameters. KV cache float32.`);
  print(`Machine: ${cpus()[0]?.model ?? "unknown"} x${cpus().length}, Node ${process.version}, onnxruntime-node ${ort.env.versions.common}, CPU path ${options.threads} intra-op thread(s).`);
  print();
  print("| weights | measure | CPU path | WebGPU, cache on the device | WebGPU / CPU time |");
  print("|---|---|---|---|---|");
  let adapter = "";
  for (const dtype of options.dtypes as WeightDtype[]) {
    const out = join(root, dtype);
    await convertHfCheckpoint(hfDir, out, { projections: projectionStorage(dtype) });
    const row = await measure(dtype, out);
    adapter ||= row.adapter ?? "";
    printRow(row);
    save();
    rmSync(out, { recursive: true, force: true });
  }
  print();
  print(`WebGPU adapter: ${adapter || "none"}; load average at the end ${loadavg().map((l) => fmt(l)).join(" ")}.`);
  save();
} finally {
  rmSync(root, { recursive: true, force: true });
}
