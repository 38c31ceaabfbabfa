/**
 * `make bench`, text tokenization: stories260K's llama2.c tokenizer encoding
 * 10 KB, 100 KB and 1 MB of text, in one go and in slices (as Prefill runs it,
 * yielding to the event loop), and the time per byte relative to 10 KB (wall
 * and CPU time): flat means linear growth. The rescanning encoder it replaced is timed at 10 KB
 * for comparison. A benchmark, never a test.
 */
import { Command } from "commander";
import { readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { defaultModelFiles } from "../src/model/default-model.js";
import { Llama2cTokenizer } from "../src/model/tokenizers/llama2c-tokenizer.js";
import { readTokFile, rescanningEncode } from "../test/reference/llama2c-rescanning-encoder.js";
import { REFERENCE_TEXT } from "../test/support/test-model.js";

const options = new Command("tokenize-bench")
  .option("--quick", "10 KB and 100 KB, one run each, no rescanning encoder", false)
  .option("--out <file>", "also write the report (Markdown) to this file")
  .parse()
  .opts();

const SIZES = options.quick ? [10_000, 100_000] : [10_000, 100_000, 1_000_000];
/** Runs per size: more for small texts, whose few milliseconds the machine's noise would swamp. */
const runsFor = (bytes: number) => (options.quick ? 1 : Math.max(5, Math.min(100, Math.round(2e6 / bytes))));
// Prose (the story stories260K was trained on) and text the vocabulary lacks (byte fallback for each UTF-8 byte).
const TEXTS = { prose: `${REFERENCE_TEXT}\n`, "mixed unicode": "Lily 😀 saw 中文 and émigrés; ¿qué? Ωμέγα — ok.\n" };
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const lines: string[] = [];
const print = (line = "") => {
  console.log(line);
  lines.push(line);
};
/** `unit` repeated and cut to `bytes` bytes of UTF-8 (a few fewer where the cut would split a character). */
const textOf = (unit: string, bytes: number) => {
  const long = Buffer.from(unit.repeat(Math.ceil(bytes / Buffer.byteLength(unit))));
  return long.subarray(0, bytes).toString("utf8").replace(/\uFFFD+$/, "");
};
/** The process's CPU time so far, ms (all its threads: the garbage collector's helpers too). */
const cpuMs = () => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
};
/** Median wall and CPU times of `runs` runs: on a shared machine a long run is preempted more often than a short one, which CPU time does not count. */
const timed = async (runs: number, work: () => unknown) => {
  const walls: number[] = [];
  const cpus: number[] = [];
  for (let run = 0; run < runs; run++) {
    const [wallStart, cpuStart] = [performance.now(), cpuMs()];
    await work();
    walls.push(performance.now() - wallStart);
    cpus.push(cpuMs() - cpuStart);
  }
  return { wall: median(walls), cpu: median(cpus) };
};

const files = await defaultModelFiles();
const tokenizer = Llama2cTokenizer.load(files.tokenizerPath, 512);
tokenizer.encode(textOf(TEXTS.prose, 100_000)); // warm-up: compiled before timing

print(`# Text tokenization: stories260K's llama2.c tokenizer (${options.quick ? "quick" : "full"})`);
print();
print(`Command: \`node dist/bench/tokenize-bench.js${options.quick ? " --quick" : ""}\` (\`make bench${options.quick ? "-quick" : ""}\`); each figure is the median of ${options.quick ? "one run" : "5 runs (up to 100 for 10 KB)"}.`);
print(`Machine: ${cpus()[0]?.model.trim() ?? "unknown CPU"} x${cpus().length}, Node ${process.version}, load average at the start ${loadavg().map((l) => l.toFixed(2)).join(" ")}; run on ${new Date().toISOString().slice(0, 10)}.`);
print();
print(
  "\"per byte vs 10 KB\" is the time per byte over that at 10 KB: 1.0 is linear growth; by wall time, and by the process's CPU time, which a shared machine's preemption of long runs does not inflate. \"sliced\" is how Prefill runs it: a slice of work per event-loop turn.",
);
print();
print("| text | bytes | tokens | encode ms | CPU ms | sliced ms | µs per KB | per byte vs 10 KB | CPU per byte vs 10 KB |");
print("|---|---|---|---|---|---|---|---|---|");
for (const [name, unit] of Object.entries(TEXTS)) {
  let perByteAt10k = 0;
  let cpuPerByteAt10k = 0;
  for (const size of SIZES) {
    const text = textOf(unit, size);
    const bytes = Buffer.byteLength(text);
    const tokens = tokenizer.encode(text).length;
    const { wall, cpu } = await timed(runsFor(bytes), () => tokenizer.encode(text));
    const sliced = await timed(runsFor(bytes), () => tokenizer.encodeInSlices(text));
    const [perByte, cpuPerByte] = [wall / bytes, cpu / bytes];
    if (size === SIZES[0]) [perByteAt10k, cpuPerByteAt10k] = [perByte, cpuPerByte];
    print(
      `| ${name} | ${bytes} | ${tokens} | ${wall.toFixed(1)} | ${cpu.toFixed(1)} | ${sliced.wall.toFixed(1)} | ${(perByte * 1e6).toFixed(0)} | ${(perByte / perByteAt10k).toFixed(2)} | ${(cpuPerByte / cpuPerByteAt10k).toFixed(2)} |`,
    );
  }
}
if (!options.quick) {
  // The same megabyte in 100 calls: the work per byte without the cost of holding megabytes at once.
  print();
  print("The 1 MB texts whole against the same bytes in 100 calls of 10 KB slices (median of 5 runs each):");
  print();
  print("| text | whole ms | 100 slices ms | whole / slices |");
  print("|---|---|---|---|");
  for (const [name, unit] of Object.entries(TEXTS)) {
    const text = textOf(unit, 1_000_000);
    const slices = Array.from({ length: 100 }, (_, i) => text.slice((i * text.length) / 100, ((i + 1) * text.length) / 100));
    const whole = await timed(5, () => tokenizer.encode(text));
    const inSlices = await timed(5, () => slices.forEach((slice) => tokenizer.encode(slice)));
    print(`| ${name} | ${whole.wall.toFixed(1)} | ${inSlices.wall.toFixed(1)} | ${(whole.wall / inSlices.wall).toFixed(2)} |`);
  }
  const { pieces, scores } = readTokFile(readFileSync(files.tokenizerPath), 512);
  const text = textOf(TEXTS.prose, 10_000);
  const started = performance.now();
  rescanningEncode(pieces, scores, text);
  print();
  print(`The rescanning encoder (quadratic: it rescans the list for each merge) took ${(performance.now() - started).toFixed(0)} ms for the 10 KB of prose, one run.`);
}
print();
print(`Load average at the end: ${loadavg().map((l) => l.toFixed(2)).join(" ")}.`);
if (options.out) writeFileSync(options.out, `${lines.join("\n")}\n`);
