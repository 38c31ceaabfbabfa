/**
 * Target 8 alone (`make bench` runs it inside bench.ts): a short Decode
 * stream's speed beside a long one against alone, in one run, with the model
 * on one session thread, its long steps in stages (the default: short steps
 * run between two stages, with three times the stages' thread time, or with
 * equal time) or whole (steps in turn), and on two session threads (a short
 * lane steps beside the long one); also the event loop's
 * longest stall while both decode. On stories260K by default, where a step is
 * onnxruntime's dispatch and the long one's attention; `--model 200m` on the
 * ~200M bench Llama, where a step is bound by its weights and the short stream
 * shares the long one's runs (src/engine/length-lanes.ts). A benchmark, never a test.
 */
import { Command } from "commander";
import { cpus, loadavg } from "node:os";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { Engine } from "../src/engine/engine.js";
import { defaultModelFiles } from "../src/model/default-model.js";
import { loadModel, loadModelDir } from "../src/model/load-model.js";
import type { EngineModel } from "../src/model/engine-model.js";
import { llama200MFiles } from "./llama-200m-model.js";
import { MarkdownReport } from "./markdown-report.js";
import { shortBesideLong, type ShortBesideLongResult } from "./short-beside-long.js";
import { BENCH_ENGINE_OPTIONS } from "./bench-engine-options.js";

const options = new Command("short-beside-long-bench")
  .option("--quick", "5 rounds at 2048 cached tokens instead of 7 at 8192 (200m: 4 layers, 512 cached, 16 tokens)", false)
  .option("--model <name>", "stories260K, or 200m: the ~200M bench Llama (random weights, float32; 2048 cached, 32 tokens)", "stories260K")
  .option("--threads <n>", "onnxruntime intra-op threads per session", (v) => Number(v), 1)
  .option("--out <file>", "also write the report (Markdown) to this file")
  .parse()
  .opts();

// Many short rounds, alone and beside adjacent in each: on a shared machine one round says little.
const large = options.model === "200m";
if (!large && options.model !== "stories260K") throw new Error(`--model: stories260K or 200m, not '${options.model}'`);
const rounds = options.quick ? 5 : 7;
const longContext = large ? (options.quick ? 512 : 2048) : options.quick ? 2048 : 8192;
const shortTokens = large ? (options.quick ? 16 : 32) : options.quick ? 100 : 200;
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const prompt = (n: number) => Array.from({ length: n }, (_, i) => (i === 0 ? 1 : 3 + ((i * 7919) % 500)));

const largeFiles = large ? await llama200MFiles(options.quick ? 4 : 12) : undefined;
const files = large ? undefined : await defaultModelFiles();
interface Setup {
  label: string;
  sessionThreads: number;
  /** Absent: the default for the model. */
  stepStages?: number;
  /** Absent: the default. */
  shortStepWeight?: number;
}
const layers = large ? (options.quick ? 4 : 12) : 5;
const setups: Setup[] = [
  { label: `1, steps in stages${large ? ` (--step-stages ${layers})` : " (default)"}`, sessionThreads: 1, stepStages: layers },
  { label: `1, steps in stages, equal time (${large ? `--step-stages ${layers} ` : ""}--short-step-weight 1)`, sessionThreads: 1, stepStages: layers, shortStepWeight: 1 },
  { label: `1, steps whole (--step-stages 1)${large ? " (default)" : ""}`, sessionThreads: 1, stepStages: 1 },
  { label: "2, steps whole", sessionThreads: 2, stepStages: 1 },
];
const load = ({ sessionThreads, stepStages, shortStepWeight }: Setup): Promise<EngineModel> => {
  const runner = { executionProvider: "cpu" as const, intraOpThreads: options.threads, sessionThreads, stepStages, shortStepWeight };
  return largeFiles ? loadModelDir(largeFiles.dir, runner) : loadModel(files!, runner);
};
const engines = new Map<Setup, Engine>();
for (const setup of setups) {
  const engine = new Engine(await load(setup), BENCH_ENGINE_OPTIONS);
  await engine.prefill({ sequenceId: "long", tokenIds: prompt(longContext) });
  engines.set(setup, engine);
}

const results = new Map<Setup, (ShortBesideLongResult & { stallMs: number })[]>(setups.map((setup) => [setup, []]));
// Interleaved: each round measures every setup, after one untimed warm-up round.
for (let round = -1; round < rounds; round++) {
  for (const [setup, engine] of engines) {
    const delay = monitorEventLoopDelay({ resolution: 1 });
    delay.enable();
    const result = await shortBesideLong(engine, "long", shortTokens, `round-${round}`);
    delay.disable();
    if (round >= 0) results.get(setup)!.push({ ...result, stallMs: delay.max / 1e6 });
  }
}

const report = new MarkdownReport();
report.print("# Target 8: a short stream beside a long one, by session threads and step stages");
report.print();
report.print(`${large ? `The ~200M bench Llama (${options.quick ? 4 : 12} layers, float32, random weights)` : "stories260K"}: a short stream (${shortTokens} tokens) beside a long one (${longContext} cached), ${rounds} rounds, medians (of each round's ratio for the ratio); load average ${loadavg()[0].toFixed(1)} on ${cpus().length} CPUs; command: \`node dist/bench/short-beside-long-bench.js${process.argv.slice(2).map((arg) => ` ${arg}`).join("")}\`.`);
report.print();
report.print("| setup: session threads, steps | short alone tok/s | short beside tok/s | short beside / alone | short p90 ms between tokens, alone / beside | long alone tok/s | long beside tok/s | longest event-loop stall | same tokens |");
report.print("|---|---|---|---|---|---|---|---|---|");
let mismatch = false;
for (const [setup, list] of results) {
  const m = (pick: (r: ShortBesideLongResult & { stallMs: number }) => number) => median(list.map(pick));
  mismatch ||= list.some((r) => !r.sameTokens);
  report.print(
    `| ${setup.label} | ${m((r) => r.shortAlone).toFixed(0)} | ${m((r) => r.shortBeside).toFixed(0)} | ${m((r) => r.shortBeside / r.shortAlone).toFixed(2)}x | ${m((r) => r.shortGapP90Alone).toFixed(2)} / ${m((r) => r.shortGapP90Beside).toFixed(2)} | ${m((r) => r.longAlone).toFixed(0)} | ${m((r) => r.longBeside).toFixed(0)} | ${m((r) => r.stallMs).toFixed(1)} ms | ${list.every((r) => r.sameTokens)} |`,
  );
}
if (options.out) report.write(options.out);
if (mismatch) {
  console.error("TOKEN MISMATCH: the short stream generated other tokens beside the long one than alone");
  process.exitCode = 1;
}
for (const engine of engines.values()) {
  engine.close();
  await engine.model.runner.release();
}
largeFiles?.remove();
