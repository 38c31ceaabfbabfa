/**
 * `make bench`, WebGPU part: kvwarden with `--execution-provider webgpu` (the KV cache on the
 * device) next to the CPU path, in interleaved rounds on the default model: decode from BOS,
 * prefill, and decode steps by cache length, full and after eviction. Checks that both paths pick
 * the same greedy tokens. Without a WebGPU adapter it says so and measures nothing. A benchmark,
 * never a test; on lavapipe (Vulkan on the CPU) its figures say nothing about a GPU.
 */
import { Command } from "commander";
import { writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import ort from "onnxruntime-node";
import { Engine, type EngineOptions } from "../src/engine/engine.js";
import { BENCH_ENGINE_OPTIONS } from "./bench-engine-options.js";
import { defaultModelFiles } from "../src/model/default-model.js";
import { loadModel } from "../src/model/load-model.js";
import type { ExecutionProvider } from "../src/model/runners/model-runner.js";
import { timedGreedyDecode } from "./timed-decode.js";

const options = new Command("webgpu-bench")
  .option("--quick", "one round, fewer steps and lengths", false)
  .option("--out <file>", "also write the report (Markdown) to this file")
  .parse()
  .opts();

const rounds = options.quick ? 1 : 3;
const decodeTokens = options.quick ? 50 : 200;
const stepsPerLength = options.quick ? 8 : 32;
const lengths = options.quick ? [128, 512] : [128, 512, 2048];
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const fmt = (n: number, digits = 2) => n.toFixed(digits);
const lines: string[] = [];
const print = (line = "") => {
  console.log(line);
  lines.push(line);
};
const finish = () => {
  if (options.out) writeFileSync(options.out, lines.join("\n") + "\n");
};

const engineOptions: EngineOptions = { ...BENCH_ENGINE_OPTIONS, kvBudgetBytes: 2 ** 30 };
const files = await defaultModelFiles();
const engineOn = async (executionProvider: ExecutionProvider) => new Engine(await loadModel(files, { executionProvider, intraOpThreads: 1 }), engineOptions);

print(`# kvwarden bench, WebGPU (${options.quick ? "quick" : "full"})`);
print();
print(`Command: \`node dist/bench/webgpu-bench.js${options.quick ? " --quick" : ""}\` (\`make bench\`). Model stories260K, 1 intra-op thread, ${rounds} interleaved round(s), medians.`);
let gpu: Engine;
try {
  gpu = await engineOn("webgpu");
} catch (error) {
  print();
  print(`Not measured: ${(error as Error).message}`);
  finish();
  process.exit(0);
}
const cpu = await engineOn("cpu");

const prompt = (n: number) => Array.from({ length: n }, (_, i) => (i === 0 ? 1 : 3 + ((i * 7919) % 500)));


const sides = { cpu, webgpu: gpu } as const;
type SideName = keyof typeof sides;
const decodeMs: Record<SideName, number[]> = { cpu: [], webgpu: [] };
const prefillMs: Record<SideName, number[]> = { cpu: [], webgpu: [] };
let mismatch = "";
for (let round = -1; round < rounds; round++) {
  const chosen: Record<string, number[]> = {};
  for (const name of ["cpu", "webgpu"] as const) {
    const engine = sides[name];
    await engine.prefill({ sequenceId: "bos", tokenIds: [1] });
    const run = await timedGreedyDecode(engine, "bos", decodeTokens);
    await engine.release("bos");
    chosen[name] = run.tokens;
    const start = performance.now();
    await engine.prefill({ sequenceId: "prefill", tokenIds: prompt(256) });
    const prefill = performance.now() - start;
    await engine.release("prefill");
    if (round < 0) continue;
    decodeMs[name].push(median(run.gaps));
    prefillMs[name].push(prefill);
  }
  if (chosen.cpu.join() !== chosen.webgpu.join()) mismatch = `round ${round}: the paths chose different tokens`;
}

const steps: { length: number; cpuFull: number; gpuFull: number; cpuEvicted: number; gpuEvicted: number; deviceMiB: number }[] = [];
for (const length of lengths) {
  const timing: Record<string, number[]> = { cpuFull: [], gpuFull: [], cpuEvicted: [], gpuEvicted: [] };
  let deviceMiB = 0;
  for (let round = 0; round < rounds; round++) {
    for (const [name, engine] of [["cpu", cpu], ["gpu", gpu]] as const) {
      await engine.prefill({ sequenceId: "steps", tokenIds: prompt(length) });
      if (name === "gpu") deviceMiB = engine.stats({ sequenceId: "steps" }).kvBytesDevice / 2 ** 20;
      timing[`${name}Full`].push(median((await timedGreedyDecode(engine, "steps", stepsPerLength + 1)).gaps));
      await engine.release("steps");
      await engine.prefill({ sequenceId: "steps", tokenIds: prompt(length), eviction: { policy: "streaming_llm", budget: { keepFraction: 0.2 }, params: {} } });
      timing[`${name}Evicted`].push(median((await timedGreedyDecode(engine, "steps", stepsPerLength + 1)).gaps));
      await engine.release("steps");
    }
  }
  steps.push({ length, cpuFull: median(timing.cpuFull), gpuFull: median(timing.gpuFull), cpuEvicted: median(timing.cpuEvicted), gpuEvicted: median(timing.gpuEvicted), deviceMiB });
}

const adapter = gpu.model.runner.deviceCache?.adapter ?? "";
print(`Machine: ${cpus()[0]?.model ?? "unknown"} x${cpus().length}, Node ${process.version}, onnxruntime-node ${ort.env.versions.common}; WebGPU: ${adapter}; load average at the end ${loadavg().map((l) => fmt(l)).join(" ")}.`);
print();
print(mismatch ? `**TOKEN MISMATCH**: ${mismatch}.` : `Both paths chose the same ${decodeTokens} greedy tokens from BOS in every round.`);
print();
print("| measure | CPU path | WebGPU, cache on the device | WebGPU / CPU time |");
print("|---|---|---|---|");
print(`| decode from BOS, ms per token (${decodeTokens} tokens) | ${fmt(median(decodeMs.cpu), 3)} | ${fmt(median(decodeMs.webgpu), 3)} | ${fmt(median(decodeMs.webgpu) / median(decodeMs.cpu))}x |`);
print(`| prefill 256 tokens, ms | ${fmt(median(prefillMs.cpu))} | ${fmt(median(prefillMs.webgpu))} | ${fmt(median(prefillMs.webgpu) / median(prefillMs.cpu))}x |`);
for (const s of steps) {
  print(`| decode step at ${s.length} cached (device slab ${fmt(s.deviceMiB, 2)} MiB), ms | ${fmt(s.cpuFull, 3)} | ${fmt(s.gpuFull, 3)} | ${fmt(s.gpuFull / s.cpuFull)}x |`);
  print(`| the same after streaming_llm to 20%, ms | ${fmt(s.cpuEvicted, 3)} | ${fmt(s.gpuEvicted, 3)} | ${fmt(s.gpuEvicted / s.cpuEvicted)}x |`);
}
finish();
cpu.close();
gpu.close();
await cpu.model.runner.release();
await gpu.model.runner.release();
if (mismatch) process.exitCode = 1;
