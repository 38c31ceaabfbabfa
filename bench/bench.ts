/**
 * `make bench`: decode and prefill speed of kvwarden on the default model, in
 * process and over gRPC, and decode step time by cache length with the full
 * cache and after StreamingLLM eviction to 20%. Prints medians; never a test.
 */
import { credentials } from "@grpc/grpc-js";
import { Command } from "commander";
import { cpus, loadavg } from "node:os";
import { Engine, type EngineOptions } from "../src/engine/engine.js";
import { DecodeRequest, KvCacheClient, PrefillRequest, type PrefillResponse } from "../src/gen/kvwarden/v1/kvwarden.js";
import { defaultModelFiles } from "../src/model/default-model.js";
import { loadModel } from "../src/model/load-model.js";
import { KvwardenServer } from "../src/server/server.js";

const options = new Command("bench")
  .option("--quick", "one round, fewer steps and lengths", false)
  .option("--threads <n>", "onnxruntime intra-op threads", (v) => Number(v), 1)
  .parse()
  .opts();

const rounds = options.quick ? 1 : 3;
const decodeTokens = options.quick ? 64 : 200;
const stepsPerLength = options.quick ? 16 : 64;
const lengths = options.quick ? [128, 512, 2048] : [128, 512, 2048, 8192];
const greedy = { temperature: 0, topK: 0, topP: 0, seed: 0n };

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

const model = await loadModel(await defaultModelFiles(), { executionProvider: "cpu", intraOpThreads: options.threads });
const engineOptions: EngineOptions = {
  kvBudgetBytes: 4 * 2 ** 30,
  maxSequenceTokens: 16_384,
  prefillChunkTokens: 128,
  allowPastContext: true,
  sequenceTtlMs: 3_600_000,
  recentQueryRows: 64,
};
const engine = new Engine(model, engineOptions);
const server = new KvwardenServer(engine, { executionProvider: "cpu", version: "bench" });
const port = await server.listen("127.0.0.1:0");
const client = new KvCacheClient(`127.0.0.1:${port}`, credentials.createInsecure());

/** Milliseconds between consecutive tokens of one in-process Decode call. */
async function decodeInProcess(sequenceId: string, tokens: number): Promise<number[]> {
  const gaps: number[] = [];
  let last = performance.now();
  for await (const _ of engine.decode({ sequenceId, maxNewTokens: tokens, sampling: greedy, stopTokenIds: [], ignoreEos: true })) {
    const now = performance.now();
    gaps.push(now - last);
    last = now;
  }
  return gaps;
}

async function decodeOverGrpc(sequenceId: string, tokens: number): Promise<number> {
  const start = performance.now();
  for await (const _ of client.decode(DecodeRequest.fromPartial({ sequenceId, maxNewTokens: tokens, ignoreEos: true }))) {
    // drain
  }
  return performance.now() - start;
}

const prefillOverGrpc = (sequenceId: string, tokenIds: number[]) =>
  new Promise<PrefillResponse>((resolve, reject) =>
    client.prefill(PrefillRequest.fromPartial({ sequenceId, tokenIds }), (error, response) => (error ? reject(error) : resolve(response))),
  );

// Decode from BOS, in process and over gRPC, interleaved round by round.
const inProcess: number[] = [];
const overGrpc: number[] = [];
for (let round = 0; round < rounds; round++) {
  await engine.prefill({ sequenceId: "ip", tokenIds: [1] });
  const gaps = await decodeInProcess("ip", decodeTokens);
  inProcess.push((decodeTokens / gaps.reduce((a, b) => a + b, 0)) * 1000);
  engine.release("ip");
  await prefillOverGrpc("grpc", [1]);
  overGrpc.push((decodeTokens / (await decodeOverGrpc("grpc", decodeTokens))) * 1000);
  engine.release("grpc");
}

// Prefill speed.
const prompt = (n: number) => Array.from({ length: n }, (_, i) => (i === 0 ? 1 : 3 + ((i * 7919) % 500)));
const prefillRates: Record<number, number> = {};
for (const n of [256, 2048]) {
  const times: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const start = performance.now();
    await engine.prefill({ sequenceId: "prefill", tokenIds: prompt(n) });
    times.push(performance.now() - start);
    engine.release("prefill");
  }
  prefillRates[n] = (n / median(times)) * 1000;
}

// Decode step time by cache length: full cache, then after streaming_llm to 20%.
const steps: { length: number; fullMs: number; evictedMs: number; keptEntries: number }[] = [];
for (const length of lengths) {
  const full: number[] = [];
  const evicted: number[] = [];
  let kept = 0;
  for (let round = 0; round < rounds; round++) {
    await engine.prefill({ sequenceId: "steps", tokenIds: prompt(length) });
    full.push(median((await decodeInProcess("steps", stepsPerLength + 1)).slice(1)));
    engine.release("steps");
    await engine.prefill({ sequenceId: "steps", tokenIds: prompt(length), eviction: { policy: "streaming_llm", budget: { keepFraction: 0.2 }, params: {} } });
    kept = engine.stats("steps").sequences[0].headLengths[0][0];
    evicted.push(median((await decodeInProcess("steps", stepsPerLength + 1)).slice(1)));
    engine.release("steps");
  }
  steps.push({ length, fullMs: median(full), evictedMs: median(evicted), keptEntries: kept });
}

const fmt = (n: number, digits = 1) => n.toFixed(digits);
console.log(`kvwarden bench (${options.quick ? "quick" : "full"}): ${model.config.name}, ${rounds} round(s), ${options.threads} thread(s)`);
console.log(`machine: ${cpus()[0]?.model ?? "unknown"} x${cpus().length}, node ${process.version}, load ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
console.log("");
console.log(`| decode ${decodeTokens} tokens from BOS (greedy) | tokens/s (median) |`);
console.log("|---|---|");
console.log(`| in process | ${fmt(median(inProcess))} |`);
console.log(`| over gRPC streaming (loopback) | ${fmt(median(overGrpc))} (${fmt(median(overGrpc) / median(inProcess), 2)}x) |`);
console.log("");
console.log("| prefill | tokens/s (median) |");
console.log("|---|---|");
for (const [n, rate] of Object.entries(prefillRates)) console.log(`| ${n} tokens | ${fmt(rate, 0)} |`);
console.log("");
console.log("| cached tokens | step ms, full cache | step ms, streaming_llm 20% | entries/head kept | ratio |");
console.log("|---|---|---|---|---|");
for (const s of steps) console.log(`| ${s.length} | ${fmt(s.fullMs, 3)} | ${fmt(s.evictedMs, 3)} | ${s.keptEntries} | ${fmt(s.evictedMs / s.fullMs, 2)} |`);

client.close();
await server.close(1_000);
await model.runner.release();
