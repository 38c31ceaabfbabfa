#!/usr/bin/env node
import { Command, InvalidArgumentError, Option } from "commander";
import { readFileSync } from "node:fs";
import { Engine } from "../engine/engine.js";
import { defaultModelFiles } from "../model/default-model.js";
import { loadModel } from "../model/load-model.js";
import type { ExecutionProvider } from "../model/step-runner.js";
import { KvwardenServer } from "../server/server.js";
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

function log(fields: Record<string, unknown>): void {
  process.stderr.write(JSON.stringify({ time: new Date().toISOString(), ...fields }) + "\n");
}

const program = new Command("kvwarden").description("A gRPC sidecar that runs an LLM and owns its KV cache").version(version);

program
  .command("serve")
  .description("run the gRPC server")
  .option("--model <path>", "llama2.c checkpoint (default: stories260K, from ../shared/models or downloaded and checked)")
  .option("--tokenizer <path>", "llama2.c tokenizer (required with --model)")
  .option("--listen <address>", "host:port or unix:/path to serve on", "127.0.0.1:50051")
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
    const files = options.model ? { modelPath: options.model, tokenizerPath: options.tokenizer } : await defaultModelFiles();
    const executionProvider = options.executionProvider as ExecutionProvider;
    const model = await loadModel(files, { executionProvider, intraOpThreads: options.threads });
    const engine = new Engine(model, {
      kvBudgetBytes: options.kvBudget,
      maxSequenceTokens: options.maxSequenceTokens,
      prefillChunkTokens: options.prefillChunk,
      allowPastContext: options.allowPastContext,
      sequenceTtlMs: options.sequenceTtl * 1000,
      recentQueryRows: options.recentQueries,
    });
    const server = new KvwardenServer(engine, { executionProvider, version });
    const port = await server.listen(options.listen);
    log({ level: "info", msg: "serving", listen: options.listen, port, model: model.config.name, kvBudgetBytes: options.kvBudget });
    const stop = async (signal: string) => {
      log({ level: "info", msg: "shutting down", signal });
      await server.close(options.shutdownGrace * 1000);
      await model.runner.release();
      process.exit(0);
    };
    process.once("SIGTERM", () => void stop("SIGTERM"));
    process.once("SIGINT", () => void stop("SIGINT"));
  });

program.parseAsync().catch((error) => {
  log({ level: "error", msg: error instanceof Error ? error.message : String(error) });
  process.exit(1);
});
