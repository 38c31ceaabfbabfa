/**
 * `make bench`, eviction's capacity gain (issue 20, target 5): a fixed KV budget and 2,048-token prompts
 * on the ~200M bench Llama. Per policy: how many sessions the budget admits (the engine's own admission,
 * copies of one prefilled session by Fork until RESOURCE_EXHAUSTED), the aggregate decode tokens/s of
 * that many sessions decoding at once (continuous batching, on an engine with room to grow; after an
 * untimed round of two tokens), and the
 * fidelity cost against the full cache with the eval harness's measures (src/eval/metrics.ts:
 * teacher-forced continuation, top-1 agreement, KL, perplexity). A benchmark, never a test.
 */
import { Command } from "commander";
import { cpus, loadavg } from "node:os";
import { Engine } from "../src/engine/engine.js";
import { EngineError } from "../src/engine/engine-error.js";
import type { EvictionSpec } from "../src/policies/policy.js";
import { comparePositions, summarise, type QualitySummary, type TokenScore } from "../src/eval/metrics.js";
import type { TokenLogprob } from "../src/model/sampling/logprobs.js";
import { BENCH_ENGINE_OPTIONS } from "./bench-engine-options.js";
import { llama200MFiles } from "./llama-200m-model.js";
import { MarkdownReport } from "./markdown-report.js";

const options = new Command("capacity-gain-bench")
  .option("--quick", "2 layers instead of 12, 8 decoded tokens per session, 32 scored", false)
  .option("--threads <n>", "onnxruntime intra-op threads", (v) => Number(v), 1)
  .option("--full-sessions <n>", "the KV budget: this many full-cache sessions (plus a half)", (v) => Number(v), 4)
  .option("--out <file>", "also write the report (Markdown) to this file")
  .parse()
  .opts();

const LAYERS = options.quick ? 2 : 12;
const PROMPT = 2048;
const DECODED = options.quick ? 8 : 32;
const SCORED = options.quick ? 32 : 64;
const KEEP = 0.2;
const MAX_SESSIONS = 64;
const tokens = (count: number, offset: number) => Array.from({ length: count }, (_, i) => 1 + ((i * 31 + offset * 7) % 31_000));
const prompt = tokens(PROMPT, 0);
const continuation = tokens(SCORED, 5);
const greedy = { temperature: 0, topK: 0, topP: 1, seed: 0n };

const POLICIES: { label: string; eviction?: EvictionSpec }[] = [
  { label: "full cache" },
  { label: "snapkv 20%", eviction: { policy: "snapkv", budget: { keepFraction: KEEP }, params: {} } },
  { label: "adakv 20%", eviction: { policy: "adakv", budget: { keepFraction: KEEP }, params: {} } },
  { label: "streaming_llm 20%", eviction: { policy: "streaming_llm", budget: { keepFraction: KEEP }, params: {} } },
];

/** Sessions `budgetBytes` admits: one prefilled (with the policy), then Forks of it until admission refuses. */
async function admitted(engine: Engine, eviction: EvictionSpec | undefined): Promise<{ sessions: number; bytesEach: number; refusal: string }> {
  const first = await engine.prefill({ sequenceId: "s0", tokenIds: prompt, eviction });
  let sessions = 1;
  let refusal = `stopped at ${MAX_SESSIONS}`;
  for (; sessions < MAX_SESSIONS; sessions++) {
    try {
      await engine.fork("s0", `s${sessions}`);
    } catch (error) {
      if (!(error instanceof EngineError) || error.code !== "RESOURCE_EXHAUSTED") throw error;
      refusal = error.message;
      break;
    }
  }
  return { sessions, bytesEach: first.kvBytes, refusal };
}

/** Aggregate tokens/s of `sessions` copies of one prefilled session decoding DECODED tokens each, at once. */
async function decodeRate(engine: Engine, eviction: EvictionSpec | undefined, sessions: number): Promise<number> {
  await engine.prefill({ sequenceId: "d0", tokenIds: prompt, eviction });
  for (let i = 1; i < sessions; i++) await engine.fork("d0", `d${i}`);
  let produced = 0;
  const round = (count: number) =>
    Promise.all(
      Array.from({ length: sessions }, async (_, i) => {
        for await (const _out of engine.decode({ sequenceId: `d${i}`, maxNewTokens: count, sampling: greedy, stopTokenIds: [], ignoreEos: true })) produced++;
      }),
    );
  // Untimed: the batch's first steps run shapes onnxruntime has not seen yet.
  await round(2);
  produced = 0;
  const started = performance.now();
  await round(DECODED);
  const seconds = (performance.now() - started) / 1000;
  for (let i = 0; i < sessions; i++) await engine.release(`d${i}`);
  return produced / seconds;
}

/** The continuation's scores after the prompt, as the eval harness takes them (Prefill with logprobs). */
async function scores(engine: Engine, eviction: EvictionSpec | undefined): Promise<TokenScore[]> {
  await engine.prefill({ sequenceId: "q", tokenIds: prompt, eviction });
  const { logprobs } = await engine.prefill({ sequenceId: "q", tokenIds: continuation, logprobs: { top: 20 } });
  await engine.release("q");
  return (logprobs as TokenLogprob[]).map((s) => ({ tokenId: s.tokenId, logprob: s.logprob!, top: s.top }));
}

const files = await llama200MFiles(LAYERS);
try {
  const model = await files.load(options.threads);
  const roomy = new Engine(model, BENCH_ENGINE_OPTIONS);
  const probe = await roomy.prefill({ sequenceId: "probe", tokenIds: prompt });
  await roomy.release("probe");
  const budgetBytes = Math.floor((options.fullSessions + 0.5) * probe.kvBytes);
  const fullScores = await scores(roomy, undefined);
  const rows: { label: string; sessions: number; bytesEach: number; rate: number; quality?: QualitySummary }[] = [];
  for (const { label, eviction } of POLICIES) {
    const fixed = new Engine(model, { ...BENCH_ENGINE_OPTIONS, kvBudgetBytes: budgetBytes });
    const { sessions, bytesEach } = await admitted(fixed, eviction);
    fixed.close();
    const rate = await decodeRate(roomy, eviction, sessions);
    const quality = eviction && summarise(comparePositions(fullScores, await scores(roomy, eviction)));
    rows.push({ label, sessions, bytesEach, rate, quality });
    console.error(`${label}: ${sessions} sessions, ${rate.toFixed(1)} tok/s`);
  }
  roomy.close();
  await model.runner.release();

  const full = rows[0];
  const report = new MarkdownReport();
  const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
  report.print(`# Capacity gain: sessions in a fixed KV budget (${options.quick ? "quick" : "full"})`);
  report.print();
  report.print(
    `~200M bench Llama (${LAYERS} layers, float32 weights and KV, random weights), ${PROMPT}-token prompts, KV budget ${mib(budgetBytes)} MiB (${options.fullSessions}.5 full-cache sessions); eviction at Prefill with keep_fraction ${KEEP}; ${DECODED} tokens decoded per session, all sessions at once; quality over ${SCORED} teacher-forced tokens after the prompt against the full cache (src/eval/metrics.ts). ${options.threads} intra-op thread(s), ${cpus().length} CPUs, load average ${loadavg()[0].toFixed(1)}. Command: \`node dist/bench/capacity-gain-bench.js${options.quick ? " --quick" : ""}\`.`,
  );
  report.print();
  report.print("| cache | MiB per session | sessions admitted | / full | aggregate decode tok/s | / full | top-1 agreement | mean KL (lower bound) | perplexity change |");
  report.print("|---|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    const q = r.quality;
    report.print(
      `| ${r.label} | ${mib(r.bytesEach)} | ${r.sessions} | **${(r.sessions / full.sessions).toFixed(2)}x** | ${r.rate.toFixed(1)} | ${(r.rate / full.rate).toFixed(2)}x | ${q ? `${(q.top1Agreement * 100).toFixed(1)}%` : "100%"} | ${q ? q.meanKl.toExponential(2) : "0"} | ${q ? `${q.perplexityChangePct >= 0 ? "+" : ""}${q.perplexityChangePct.toFixed(2)}%` : "0"} |`,
    );
  }
  report.print();
  for (const r of rows.slice(1)) {
    report.print(`- ${r.label}: **${(r.sessions / full.sessions).toFixed(1)} times the sessions at ${((1 - r.quality!.top1Agreement) * 100).toFixed(1)}% quality cost** (top-1 disagreement with the full cache; perplexity ${r.quality!.perplexityChangePct >= 0 ? "+" : ""}${r.quality!.perplexityChangePct.toFixed(2)}%).`);
  }
  if (options.out) report.write(options.out);
} finally {
  files.remove();
}
