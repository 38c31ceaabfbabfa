#!/usr/bin/env node
import { setLogger } from "@grpc/grpc-js";
import { Command, InvalidArgumentError, Option } from "commander";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { format } from "node:util";
import { DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_PROMPT_BYTES, Engine } from "../engine/engine.js";
import { DEFAULT_ENGINE_OPTIONS } from "../engine/engine-options.js";
import { DEFAULT_REQUEST_ID_TTL_MS } from "../engine/request-log.js";
import { DEFAULT_MODEL_HELP } from "../model/default-model.js";
import { convertHfCheckpoint } from "../model/conversion/convert.js";
import { loadModelSource, modelSource } from "../model/load-model.js";
import { weightsDigest } from "../model/weights-digest.js";
import { modelFingerprint } from "../kv/store/model-fingerprint.js";
import { openKvStore } from "../kv/store/open-kv-store.js";
import { SnapshotStore } from "../kv/store/snapshot-store.js";
import { DEFAULT_BLOCK_SIZE, projectionStorage } from "../model/graph/projection-weights.js";
import { DEFAULT_SESSION_THREADS } from "../model/runners/step-runner.js";
import { DEFAULT_SHORT_STEP_WEIGHT } from "../model/runners/session-threads.js";
import { QUANTIZED_ACTIVATIONS, WEIGHT_DTYPES } from "../model/graph/weight-layout.js";
import type { ExecutionProvider } from "../model/runners/model-runner.js";
import { AuthTokens } from "../server/auth-tokens.js";
import { Authenticator } from "../server/authenticator.js";
import { DEFAULT_CONNECTION_LIMITS } from "../server/connection-limits.js";
import { DEFAULT_SOCKET_MODE, KvwardenServer } from "../sidecar/kvwarden-server.js";
import { TlsCertificates, validityProblem } from "../server/tls.js";
import { maxRequestBytes } from "../server/message-limit.js";
import { packagePath } from "../package/package-root.js";
import { parseSocketMode } from "../server/unix-socket.js";
import { EngineTelemetry } from "../telemetry/engine-telemetry.js";
import { jsonLog as log } from "../telemetry/json-log.js";
import { KvwardenMetrics } from "../telemetry/metrics.js";
import { MetricsServer } from "../telemetry/metrics-server.js";
import { startTracing } from "../telemetry/tracing.js";
import { formatByteSize, parseByteSize } from "./byte-size.js";
import { evalCommand } from "./eval-command.js";
import { nonNegativeInt, positiveInt } from "./whole-number-options.js";

const { version } = JSON.parse(readFileSync(packagePath("package.json"), "utf8"));

function socketMode(value: string): number {
  try {
    return parseSocketMode(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

function byteSize(value: string): number {
  try {
    return parseByteSize(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

/** A size option whose default help shows as a size (512MiB), not a byte count. */
function byteSizeOption(flags: string, description: string, defaultBytes: number): Option {
  return new Option(flags, description).argParser(byteSize).default(defaultBytes, formatByteSize(defaultBytes));
}

const program = new Command("kvwarden").description("A gRPC sidecar that runs an LLM and owns its KV cache").version(version);

program
  .command("serve")
  .description("run the gRPC server")
  .option(
    "--model <path>",
    `a model folder (Hugging Face checkpoint, or what kvwarden convert wrote), or a llama2.c checkpoint with --tokenizer (default: stories260K, ${DEFAULT_MODEL_HELP})`,
  )
  .option("--tokenizer <path>", "llama2.c tokenizer (required with a llama2.c --model)")
  .addOption(new Option("--kv-dtype <type>", "how the KV cache stores keys and values (and sequences their recent queries): float16 halves their memory").choices(["float32", "float16"]).default("float32"))
  .option("--listen <address>", "host:port or unix:/path to serve on", "127.0.0.1:50051")
  .option("--health-listen <address>", "host:port to serve grpc.health.v1 on as well (Kubernetes probes reach the pod IP)")
  .option("--metrics-listen <address>", "host:port to serve Prometheus metrics on, at /metrics")
  .option("--http-listen <address>", "host:port to serve the OpenAI-compatible HTTP API on as well (/v1/completions, /v1/chat/completions, /v1/models; plain HTTP, see docs/http-api.md)")
  .addOption(byteSizeOption("--kv-budget <size>", "KV memory all sequences may hold", DEFAULT_ENGINE_OPTIONS.kvBudgetBytes))
  .option(
    "--max-queue <n>",
    "Prefill and Fork calls that may wait for KV memory (in turns across tenants, until their deadline) when the budget is full; 0 = refuse at once with RESOURCE_EXHAUSTED",
    nonNegativeInt,
    0,
  )
  .option("--max-sequence-tokens <n>", "most entries one KV head of a sequence may hold", positiveInt, DEFAULT_ENGINE_OPTIONS.maxSequenceTokens)
  .option("--prefill-chunk <n>", "tokens per prefill step (bounds peak memory)", positiveInt, DEFAULT_ENGINE_OPTIONS.prefillChunkTokens)
  .option("--allow-past-context", "accept positions past the model's trained context (benchmarks)", DEFAULT_ENGINE_OPTIONS.allowPastContext)
  .option("--sequence-ttl <seconds>", "drop sequences idle for this long", positiveInt, DEFAULT_ENGINE_OPTIONS.sequenceTtlMs / 1000)
  .option("--request-id-ttl <seconds>", "recognise a retried request_id for this long after its first call", positiveInt, DEFAULT_REQUEST_ID_TTL_MS / 1000)
  .option("--recent-queries <n>", "recent tokens whose queries a sequence keeps until a policy is named for it (then the rows that policy reads)", positiveInt, DEFAULT_ENGINE_OPTIONS.recentQueryRows)
  .option("--max-batch-size <n>", "most sequences whose decode steps run together in one model run (1 = no batching)", positiveInt, DEFAULT_MAX_BATCH_SIZE)
  .addOption(new Option("--execution-provider <name>", "onnxruntime execution provider").choices(["cpu", "cuda", "webgpu"]).default("cpu"))
  .option("--threads <n>", "onnxruntime intra-op threads", positiveInt, 1)
  .option("--session-threads <n>", "CPU: worker threads that run the model off the event loop, each with its own onnxruntime session and copy of the weights (docs/worker-threads.md)", positiveInt, DEFAULT_SESSION_THREADS)
  .option(
    "--step-stages <n>",
    "CPU: while other streams decode, cut a step over a long context into this many runs of consecutive layers, so that short steps run between them (1 = never; each session thread then holds the weights twice) (default: one per layer for weights up to 64 MiB, else 1; docs/worker-threads.md)",
    positiveInt,
  )
  .option(
    "--short-step-weight <n>",
    "CPU, with --step-stages: between two stages of a long step, steps of other streams may take up to N times the thread time of the stage before (1 = equal time; docs/worker-threads.md)",
    positiveInt,
    DEFAULT_SHORT_STEP_WEIGHT,
  )
  .option("--shutdown-grace <seconds>", "on SIGTERM, time for running calls to finish and, with --kv-store, for offloading every resident sequence", positiveInt, 10)
  .option("--auth-tokens <file>", "require 'authorization: Bearer TOKEN': lines of TOKEN TENANT (# comments), re-read on SIGHUP")
  .option("--tls-cert <file>", "serve TLS on a host:port listener with this PEM certificate chain (with --tls-key); the TLS files are re-read on SIGHUP")
  .option("--tls-key <file>", "PEM private key of --tls-cert")
  .option("--tls-client-ca <file>", "require client certificates signed by this PEM CA bundle (mutual TLS); without --auth-tokens the certificate's subject CN is the tenant")
  .addOption(new Option("--socket-mode <octal>", "file mode of a unix: listener's socket").argParser(socketMode).default(DEFAULT_SOCKET_MODE, `0${DEFAULT_SOCKET_MODE.toString(8)}`))
  .option("--tenant-kv-budget <size>", "KV memory one tenant's sequences may hold together, e.g. 64MiB", byteSize)
  .option("--tenant-max-sequences <n>", "sequences one tenant may hold at once", positiveInt)
  .option("--max-request-tokens <n>", "tokens one Prefill may feed or one Decode may generate", positiveInt)
  .addOption(byteSizeOption("--max-prompt-bytes <size>", "UTF-8 bytes of text (or chat messages) one Prefill may send, and token ids it may give", DEFAULT_MAX_PROMPT_BYTES))
  .option("--idle-timeout <sec>", "close a connection with no call (or no HTTP/2 preface) for this long; clients reconnect on their next call", positiveInt, DEFAULT_CONNECTION_LIMITS.idleMs / 1000)
  .option("--keepalive-interval <sec>", "ping a connection after this long without one...", positiveInt, DEFAULT_CONNECTION_LIMITS.keepaliveMs / 1000)
  .option("--keepalive-timeout <sec>", "...and close it when the ping goes unanswered this long (a vanished peer frees its streams and memory)", positiveInt, DEFAULT_CONNECTION_LIMITS.keepaliveTimeoutMs / 1000)
  .option("--no-cross-tenant-compression", "memory pressure compresses only the requesting tenant's own idle sequences (by default any tenant's with a decode budget)")
  .addOption(
    new Option("--kv-store <url>", "keep sequences in a KV store as well: redis://[user:password@]host:port[/db], rediss://... (TLS), redis+cluster://host:port,... (Redis Cluster), or file:///path (docs/kv-store.md)").env("KVWARDEN_KV_STORE"),
  )
  .option("--kv-store-ca <file>", "PEM CA bundle that signs a rediss:// or rediss+cluster:// --kv-store's certificates")
  .option("--kv-store-prefix <prefix>", "prefix of every --kv-store key (replicas sharing a store and a prefix share sequences)", "kvwarden")
  .option("--kv-store-lease <seconds>", "how long this replica's hold on a sequence lasts unless renewed: after a crash, others restore it this long after", positiveInt, 30)
  .option("--replica-name <name>", "this replica's name in --kv-store leases, as a call for a sequence it holds names it (default: host name and process id)")
  .option("--offload-idle-after <sec>", "with --kv-store, offload sequences idle for this long (default: never)", positiveInt)
  .option("--log-content", "log prompt and output text (off: logs carry ids, counts and timings only)", false)
  .action(async (options) => {
    const source = modelSource(options.model, options.tokenizer);
    if (Boolean(options.tlsCert) !== Boolean(options.tlsKey)) throw new InvalidArgumentError("--tls-cert and --tls-key go together");
    if (options.tlsClientCa && !options.tlsCert) throw new InvalidArgumentError("--tls-client-ca needs --tls-cert and --tls-key");
    if (!options.kvStore && (options.kvStoreCa || options.offloadIdleAfter)) throw new InvalidArgumentError("--kv-store-ca and --offload-idle-after need --kv-store");
    if (options.httpListen && options.tlsCert) throw new InvalidArgumentError("--http-listen serves plain HTTP and cannot be combined with --tls-cert: terminate TLS in front of it (docs/http-api.md)");
    const tokens = options.authTokens ? new AuthTokens(options.authTokens) : undefined;
    const authenticator = new Authenticator({ tokens, clientCertificates: Boolean(options.tlsClientCa) });
    // Read and checked now (a bad file stops the start, named); re-read on SIGHUP.
    const tls = options.tlsCert ? new TlsCertificates({ certPath: options.tlsCert, keyPath: options.tlsKey, clientCaPath: options.tlsClientCa }) : undefined;
    // Served all the same (a renewal may be on its way), but every client will refuse it: say so.
    const warnOfDates = (certificates: TlsCertificates) => {
      const problem = validityProblem(certificates.current);
      const { notBefore, notAfter } = certificates.current;
      if (problem) log({ level: "warn", msg: `the TLS certificate ${problem}: clients will refuse it`, file: certificates.files.certPath, notBefore, notAfter });
    };
    if (tls) warnOfDates(tls);
    const executionProvider = options.executionProvider as ExecutionProvider;
    const tracing = await startTracing(version);
    let model: Awaited<ReturnType<typeof loadModelSource>> | undefined;
    let engine: Engine | undefined;
    // The cache gauges count every tenant's sequences, not only the anonymous tenant's that stats() lists.
    const metrics = options.metricsListen
      ? new KvwardenMetrics(() => engine && { ...engine.stats(), sequenceCount: engine.sequenceCount, storedSequenceCount: engine.storedSequenceCount, requestsWaiting: engine.requestsWaiting, cacheConfig: engine.cacheConfig })
      : undefined;
    const metricsServer = metrics && new MetricsServer(metrics.registry);
    const metricsPort = metricsServer && (await metricsServer.listen(options.metricsListen));

    // Listen first and load after, so health answers NOT_SERVING while the model loads.
    const loading = (async () => {
      const runnerOptions = { executionProvider, intraOpThreads: options.threads, sessionThreads: options.sessionThreads, stepStages: options.stepStages, shortStepWeight: options.shortStepWeight, kvDtype: options.kvDtype };
      const onConvert = (cacheDir: string) => log({ level: "info", msg: "converting the Hugging Face checkpoint once", model: options.model, cacheDir });
      model = await loadModelSource(source, runnerOptions, { onConvert });
      const kvStore = options.kvStore && {
        snapshots: new SnapshotStore({
          store: await openKvStore(options.kvStore, { caFile: options.kvStoreCa }),
          prefix: options.kvStorePrefix,
          // The package version stands for the step graph's layout: a snapshot of another release is not restored.
          // Not the execution provider: cpu and webgpu replicas share sequences (docs/kv-store.md).
          model: modelFingerprint({ weights: await weightsDigest(source), graphVersion: version, kvDtype: options.kvDtype }),
          replica: options.replicaName ?? `${hostname()}-${process.pid}`,
          leaseMs: options.kvStoreLease * 1000,
          ttlMs: options.sequenceTtl * 1000,
        }),
        leaseMs: options.kvStoreLease * 1000,
        offloadIdleAfterMs: options.offloadIdleAfter && options.offloadIdleAfter * 1000,
      };
      engine = new Engine(model, {
        kvBudgetBytes: options.kvBudget,
        maxSequenceTokens: options.maxSequenceTokens,
        prefillChunkTokens: options.prefillChunk,
        allowPastContext: options.allowPastContext,
        sequenceTtlMs: options.sequenceTtl * 1000,
        recentQueryRows: options.recentQueries,
        maxBatchSize: options.maxBatchSize,
        maxPromptBytes: options.maxPromptBytes,
        tenantQuota: { kvBytes: options.tenantKvBudget, sequences: options.tenantMaxSequences, requestTokens: options.maxRequestTokens },
        requestLog: { ttlMs: options.requestIdTtl * 1000 },
        crossTenantCompression: options.crossTenantCompression,
        maxQueue: options.maxQueue,
        kvStore,
        // Spans always (exported when tracing is on); metrics when --metrics-listen serves them.
        telemetry: new EngineTelemetry(metrics),
      });
      // Before health reports SERVING: the first caller must not pay onnxruntime's first run of a step shape.
      const warmUpStarted = Date.now();
      const shapes = await engine.warmUp();
      log({ level: "info", msg: "warmed up", shapes, seconds: (Date.now() - warmUpStarted) / 1000 });
      return engine;
    })();
    const server = new KvwardenServer(
      loading,
      { executionProvider, version },
      {
        metrics,
        log,
        authenticator,
        logContent: options.logContent,
        maxRequestBytes: maxRequestBytes(options.maxSequenceTokens),
        connectionLimits: { idleMs: options.idleTimeout * 1000, keepaliveMs: options.keepaliveInterval * 1000, keepaliveTimeoutMs: options.keepaliveTimeout * 1000 },
      },
    );
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
    // SIGHUP re-reads the tokens file and the TLS files (rotation without a restart); it would otherwise end the process.
    // Each reload that fails leaves what it would have replaced in force.
    process.on("SIGHUP", () => {
      if (!tokens && !tls) {
        log({ level: "info", msg: "SIGHUP ignored: no --auth-tokens or --tls-cert to reload" });
        return;
      }
      if (tokens) {
        try {
          log({ level: "info", msg: "reloaded auth tokens", file: tokens.path, ...tokens.reload() });
        } catch (error) {
          log({ level: "error", msg: `auth tokens not reloaded, the previous ones stay in force: ${(error as Error).message}` });
        }
      }
      if (tls) {
        try {
          // New handshakes use the new files; established connections keep theirs.
          log({ level: "info", msg: "reloaded TLS certificate", file: tls.files.certPath, ...tls.reload() });
          warnOfDates(tls);
        } catch (error) {
          log({ level: "error", msg: `TLS certificate not reloaded, the previous one keeps serving: ${(error as Error).message}` });
        }
      }
    });

    const healthPort = options.healthListen ? await server.listenHealth(options.healthListen) : undefined;
    const port = await server.listen(options.listen, { tls, socketMode: options.socketMode });
    const httpPort = options.httpListen ? await server.listenHttp(options.httpListen) : undefined;
    const addresses = {
      listen: options.listen,
      port,
      healthListen: options.healthListen,
      healthPort,
      metricsListen: options.metricsListen,
      metricsPort,
      httpListen: options.httpListen,
      httpPort,
    };
    log({ level: "info", msg: "loading model", ...addresses, tracing: tracing !== undefined });
    await server.ready;
    log({
      level: "info",
      msg: "serving",
      ...addresses,
      model: model!.config.name,
      weightDtype: model!.weightDtype,
      kvBudgetBytes: options.kvBudget,
      auth: options.authTokens ? "tokens" : options.tlsClientCa ? "client-certificates" : "none",
      tls: tls === undefined ? "off" : options.tlsClientCa ? "mutual" : "on",
    });
  });

program.addCommand(evalCommand(version));

program
  .command("convert")
  .description("convert a Hugging Face checkpoint (Llama, Mistral, Qwen2) into a folder that serve --model loads without holding the weights in JS")
  .requiredOption("--hf <dir>", "checkpoint folder: config.json, model.safetensors (or shards and their index), tokenizer.json")
  .requiredOption("--out <dir>", "folder to write (see docs/models.md)")
  .addOption(
    new Option("--quantize <dtype>", `how to store the projection and classifier weights: int8 or int4 block-quantized (blocks of ${DEFAULT_BLOCK_SIZE}, for MatMulNBits); embeddings stay float32`)
      .choices(WEIGHT_DTYPES)
      .default("float32"),
  )
  .addOption(
    new Option("--quantized-activations <dtype>", "with --quantize: int8 multiplies with int8-quantized activations (fast, the default); float32 exactly by the dequantized weights (slower than float32 weights)").choices(QUANTIZED_ACTIVATIONS),
  )
  .action(async (options) => {
    const started = Date.now();
    let reported = started;
    const projections = projectionStorage(options.quantize, options.quantizedActivations);
    const manifest = await convertHfCheckpoint(options.hf, options.out, {
      projections,
      onTensor: (tensor, done, total) => {
        if (Date.now() - reported < 2000) return;
        reported = Date.now();
        log({ level: "info", msg: "converting", tensor, done, total });
      },
    });
    const last = manifest.tensors.at(-1)!;
    const { architecture, layers } = manifest.config;
    log({ level: "info", msg: "converted", out: options.out, architecture, layers, weightDtype: projections.dtype, weightBytes: last.offset + last.length, seconds: (Date.now() - started) / 1000 });
  });

// Argument errors in the same one JSON line as every other error, not commander's plain text.
for (const command of [program, ...program.commands]) {
  command.configureOutput({ outputError: (text) => log({ level: "error", msg: text.replace(/^error: /, "").trim().replace(/\s*\n\s*/g, " ") }) });
}

// grpc-js writes its own lines ("E ...") to stderr: route them into the JSON log. Its line for a
// failed bind repeats the error listen() reports with the address, so it is dropped.
const grpcLog = (level: string) => (message: unknown, ...rest: unknown[]) => {
  const text = format(message, ...rest);
  if (!text.startsWith("No address added")) log({ level, msg: `grpc-js: ${text}` });
};
setLogger({ error: grpcLog("error"), info: grpcLog("info"), debug: grpcLog("debug") });

program.parseAsync().catch((error) => {
  log({ level: "error", msg: error instanceof Error ? error.message : String(error) });
  process.exit(1);
});
