#!/usr/bin/env node
import { Command, InvalidArgumentError, Option } from "commander";
import { readFileSync } from "node:fs";
import { Engine } from "../engine/engine.js";
import { evalCommand } from "../eval/command.js";
import { defaultModelFiles } from "../model/default-model.js";
import { loadModel } from "../model/load-model.js";
import type { ExecutionProvider } from "../model/step-runner.js";
import { KvwardenServer } from "../server/server.js";
import { jsonLog as log } from "../telemetry/json-log.js";
import { KvwardenMetrics } from "../telemetry/metrics.js";
import { MetricsServer } from "../telemetry/metrics-server.js";
import { startTracing } from "../telemetry/tracing.js";
import { parseByteSize } from "./byte-size.js";

const { version } = JSON.parse(readFileSync(new URL(import.meta.url.includes("/dist/") ? "../../../package.json" : "../../package.json", import.meta.url), "utf8"));

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("must be a positive integer");
  return n;
}

function byteSize(value: string): number {
  try {
    return parseByteSize(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

const program = new Command("kvwarden").description("A gRPC sidecar that runs an LLM and owns its KV cache").version(version);

program
  .command("serve")
  .description("run the gRPC server")
  .option("--model <path>", "llama2.c checkpoint (default: stories260K, from ../shared/models or downloaded and checked)")
  .option("--tokenizer <path>", "llama2.c tokenizer (required with --model)")
  .option("--listen <address>", "host:port or unix:/path to serve on", "127.0.0.1:50051")
  .option("--health-listen <address>", "host:port to serve grpc.health.v1 on as well (Kubernetes probes reach the pod IP)")
  .option("--metrics-listen <address>", "host:port to serve Prometheus metrics on, at /metrics")
  .option("--kv-budget <size>", "KV memory all sequences may hold, e.g. 512MiB", byteSize, parseByteSize("512MiB"))
  .option("--max-sequence-tokens <n>", "most entries one KV head of a sequence may hold", positiveInt, 65536)
  .option("--prefill-chunk <n>", "tokens per prefill step (bounds peak memory)", positiveInt, 128)
  .option("--allow-past-context", "accept positions past the model's trained context (benchmarks)", false)
  .option("--sequence-ttl <seconds>", "drop sequences idle for this long", positiveInt, 600)
  .option("--recent-queries <n>", "recent tokens whose queries are kept for attention-based policies", positiveInt, 64)
  .addOption(new Option("--execution-provider <name>", "onnxruntime execution provider").choices(["cpu", "cuda"]).default("cpu"))
  .option("--threads <n>", "onnxruntime intra-op threads", positiveInt, 1)
  .option("--shutdown-grace <seconds>", "on SIGTERM, time for running calls to finish", positiveInt, 10)
  .action(async (options) => {
    if (Boolean(options.model) !== Boolean(options.tokenizer)) throw new InvalidArgumentError("--model and --tokenizer go together");
    const executionProvider = options.executionProvider as ExecutionProvider;
    const tracing = await startTracing(version);
    let model: Awaited<ReturnType<typeof loadModel>> | undefined;
    let engine: Engine | undefined;
    const metrics = options.metricsListen ? new KvwardenMetrics(() => engine?.stats()) : undefined;
    const metricsServer = metrics && new MetricsServer(metrics.registry);
    const metricsPort = metricsServer && (await metricsServer.listen(options.metricsListen));

    // Listen first and load after, so health answers NOT_SERVING while the model loads.
    const loading = (async () => {
      const files = options.model ? { modelPath: options.model, tokenizerPath: options.tokenizer } : await defaultModelFiles();
      model = await loadModel(files, { executionProvider, intraOpThreads: options.threads });
      engine = new Engine(model, {
        kvBudgetBytes: options.kvBudget,
        maxSequenceTokens: options.maxSequenceTokens,
        prefillChunkTokens: options.prefillChunk,
        allowPastContext: options.allowPastContext,
        sequenceTtlMs: options.sequenceTtl * 1000,
        recentQueryRows: options.recentQueries,
      });
      return engine;
    })();
    const server = new KvwardenServer(loading, { executionProvider, version }, { metrics, log });
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      log({ level: "info", msg: "draining", signal, graceSeconds: options.shutdownGrace });
      await server.close(options.shutdownGrace * 1000);
      await Promise.all([tracing?.shutdown(), metricsServer?.close(), model?.runner.release()]);
      log({ level: "info", msg: "stopped" });
      process.exit(0);
    };
    process.on("SIGTERM", () => void stop("SIGTERM"));
    process.on("SIGINT", () => void stop("SIGINT"));

    const healthPort = options.healthListen ? await server.listenHealth(options.healthListen) : undefined;
    const port = await server.listen(options.listen);
    const addresses = { listen: options.listen, port, healthListen: options.healthListen, healthPort, metricsListen: options.metricsListen, metricsPort };
    log({ level: "info", msg: "loading model", ...addresses, tracing: tracing !== undefined });
    await server.ready;
    log({ level: "info", msg: "serving", ...addresses, model: model!.config.name, kvBudgetBytes: options.kvBudget });
  });

program.addCommand(evalCommand(version));

program.parseAsync().catch((error) => {
  log({ level: "error", msg: error instanceof Error ? error.message : String(error) });
  process.exit(1);
});
