import { context, SpanStatusCode, trace } from "@opentelemetry/api";
import type { Engine } from "../engine/engine.js";
import { DEFAULT_MAX_PROMPT_BYTES } from "../engine/engine-options.js";
import {
  FinishReason,
  type DecodeRequest,
  type DecodeResponse,
  type EvictRequest,
  type EvictResponse,
  type InfoRequest,
  type InfoResponse,
  type KvCacheServer,
  type OffloadRequest,
  type OffloadResponse,
  type PrefillRequest,
  type PrefillResponse,
  type ForkRequest,
  type ForkResponse,
  type ReleaseRequest,
  type ReleaseResponse,
  type StatsRequest,
  type StatsResponse,
  type TruncateRequest,
  type TruncateResponse,
} from "../gen/kvwarden/v1/kvwarden.js";
import { POLICIES, snakeCase } from "../policies/registry.js";
import { GEN_AI, GEN_AI_OPERATION, KVWARDEN } from "../telemetry/attributes.js";
import { decodeTokens } from "../model/tokenizers/tokenizer.js";
import { tracer } from "../telemetry/tracer.js";
import { decodeOf, evictOf, forkOf, prefillOf, sequenceCallOf, statsOf, truncateOf } from "./kv-cache-requests.js";
import { evictionResultOf, sequenceStatsOf, tokenLogprobOf } from "./proto-responses.js";
import type { RpcScope } from "./middleware/server-call.js";
import type { RpcRuntime } from "./rpc-runtime.js";
import { minimumBudget } from "../policies/protected-parts.js";

const FINISH_REASONS = { length: FinishReason.FINISH_REASON_LENGTH, stop: FinishReason.FINISH_REASON_STOP, context: FinishReason.FINISH_REASON_CONTEXT };

export interface ServiceInfo {
  executionProvider: string;
  version: string;
}

/**
 * The KvCache gRPC service over an engine: message mapping and span
 * attributes only, no logic. `engine()` throws Unavailable while the model
 * loads. Every engine call names the caller: sequence ids are per tenant.
 */
export function kvCacheService(engine: () => Engine, info: ServiceInfo, runtime: RpcRuntime): KvCacheServer {
  const genAi = () => genAiAttributes(engine());

  return {
    prefill: runtime.unary<PrefillRequest, PrefillResponse>("Prefill", "work", async (request, scope) => {
      scope.annotate({ [KVWARDEN.sequenceId]: request.sequenceId, ...genAi() });
      const { input, requestId } = prefillOf(request);
      const outcome = await engine().prefill(input, { caller: scope.caller, signal: scope.signal, requestId });
      scope.annotate({ [GEN_AI.usageInputTokens]: outcome.promptTokens, [KVWARDEN.position]: outcome.position, [KVWARDEN.kvBytes]: outcome.kvBytes });
      scope.logContent(() => ({ prompt: decodeTokens(engine().model.tokenizer, outcome.tokenIds) }));
      return {
        sequenceId: outcome.sequenceId,
        promptTokens: outcome.promptTokens,
        position: outcome.position,
        kvBytes: BigInt(outcome.kvBytes),
        eviction: outcome.eviction && evictionResultOf(outcome.eviction),
        tokenIds: outcome.tokenIds,
        logprobs: (outcome.logprobs ?? []).map(tokenLogprobOf),
      };
    }),

    decode: runtime.stream<DecodeRequest, DecodeResponse>("Decode", "work", (request, scope) => decode(engine(), request, scope, genAi())),

    evict: runtime.unary<EvictRequest, EvictResponse>("Evict", "always", async (request, scope) => {
      scope.annotate({ [KVWARDEN.sequenceId]: request.sequenceId });
      const { sequenceId, spec, requestId } = evictOf(request);
      const outcome = await engine().evict(sequenceId, spec, { caller: scope.caller, signal: scope.signal, requestId });
      return { sequenceId, eviction: evictionResultOf(outcome) };
    }),

    stats: runtime.unary<StatsRequest, StatsResponse>("Stats", "always", async (request, scope) => {
      const { sequenceId, includePositions, includeTokenIds } = statsOf(request);
      // What a cancelled Decode leaves, not a sequence still changing.
      if (sequenceId) await engine().bringIn(sequenceId, { caller: scope.caller });
      await engine().settled(sequenceId, { caller: scope.caller });
      const stats = engine().stats({ sequenceId, includePositions, includeTokenIds }, { caller: scope.caller });
      return {
        kvBytesUsed: BigInt(stats.kvBytesUsed),
        kvBytesBudget: BigInt(stats.kvBytesBudget),
        kvBytesPooled: BigInt(stats.kvBytesPooled),
        kvBytesBatchArena: BigInt(stats.batchArenaBytes),
        kvBytesDevice: BigInt(stats.kvBytesDevice),
        kvLocation: stats.kvLocation,
        sequenceCount: stats.sequenceCount,
        sequences: stats.sequences.map(sequenceStatsOf),
        tenant: scope.caller.tenant,
        tenantKvBytes: BigInt(stats.tenantKvBytes),
        tenantSequenceCount: stats.tenantSequenceCount,
        tenantKvBytesQuota: BigInt(stats.tenantKvBytesQuota),
        tenantSequenceQuota: stats.tenantSequenceQuota,
      };
    }),

    truncate: runtime.unary<TruncateRequest, TruncateResponse>("Truncate", "always", async (request, scope) => {
      scope.annotate({ [KVWARDEN.sequenceId]: request.sequenceId });
      const { sequenceId, length, requestId } = truncateOf(request);
      const outcome = await engine().truncate(sequenceId, length, { caller: scope.caller, signal: scope.signal, requestId });
      scope.annotate({ [KVWARDEN.position]: outcome.position, [KVWARDEN.kvBytes]: outcome.kvBytes });
      return { sequenceId, position: outcome.position, droppedTokens: outcome.droppedTokens, kvBytes: BigInt(outcome.kvBytes) };
    }),

    release: runtime.unary<ReleaseRequest, ReleaseResponse>("Release", "always", async (request, scope) => {
      scope.annotate({ [KVWARDEN.sequenceId]: request.sequenceId });
      const { sequenceId, requestId } = sequenceCallOf(request);
      const { found, freedBytes } = await engine().release(sequenceId, { caller: scope.caller, signal: scope.signal, requestId });
      return { found, freedBytes: BigInt(freedBytes) };
    }),

    offload: runtime.unary<OffloadRequest, OffloadResponse>("Offload", "always", async (request, scope) => {
      scope.annotate({ [KVWARDEN.sequenceId]: request.sequenceId });
      const { sequenceId, requestId } = sequenceCallOf(request);
      const outcome = await engine().offload(sequenceId, { caller: scope.caller, signal: scope.signal, requestId });
      return { sequenceId, storedBytes: BigInt(outcome.storedBytes), chunks: outcome.chunks, freedBytes: BigInt(outcome.freedBytes) };
    }),

    fork: runtime.unary<ForkRequest, ForkResponse>("Fork", "work", async (request, scope) => {
      scope.annotate({ [KVWARDEN.sequenceId]: request.sequenceId });
      const { sequenceId, newSequenceId, requestId } = forkOf(request);
      const outcome = await engine().fork(sequenceId, newSequenceId, { caller: scope.caller, signal: scope.signal, requestId });
      return { newSequenceId: outcome.newSequenceId, position: outcome.position, kvBytes: BigInt(outcome.kvBytes) };
    }),

    info: runtime.unary<InfoRequest, InfoResponse>("Info", "always", () => {
      const { config, tokenizer, runner, weightDtype } = engine().model;
      const { options } = engine();
      return {
        model: {
          name: config.name,
          architecture: config.architecture,
          layers: config.layers,
          heads: config.heads,
          kvHeads: config.kvHeads,
          headSize: config.headSize,
          hiddenSize: config.dim,
          vocabSize: config.vocabSize,
          contextLength: config.contextLength,
          dtype: runner.dtype,
          kvDtype: runner.kvDtype,
          weightDtype,
          bosTokenId: tokenizer.bosId,
          eosTokenId: tokenizer.eosId,
        },
        executionProvider: info.executionProvider,
        adapter: runner.deviceCache?.adapter ?? "",
        policies: [...POLICIES.values()].map((policy) => ({
          name: policy.name,
          description: policy.description,
          parameters: policy.parameters.map((p) => ({ name: snakeCase(p.name), description: p.description, defaultValue: String(p.defaultValue) })),
          minimumBudgetTokens: minimumBudget(policy, {}),
        })),
        limits: {
          kvBytesBudget: BigInt(options.kvBudgetBytes),
          maxSequenceTokens: options.maxSequenceTokens,
          allowPastContext: options.allowPastContext,
          prefillChunkTokens: options.prefillChunkTokens,
          sequenceTtlMs: BigInt(options.sequenceTtlMs),
          tenantKvBytesQuota: BigInt(options.tenantQuota?.kvBytes ?? 0),
          tenantMaxSequences: options.tenantQuota?.sequences ?? 0,
          maxRequestTokens: options.tenantQuota?.requestTokens ?? 0,
          maxPromptBytes: BigInt(options.maxPromptBytes ?? DEFAULT_MAX_PROMPT_BYTES),
          maxQueue: options.maxQueue ?? 0,
        },
        version: info.version,
      };
    }),
  };
}

/** GenAI attributes every model call carries. */
export function genAiAttributes(engine: Engine): Record<string, string> {
  return { [GEN_AI.operationName]: GEN_AI_OPERATION, [GEN_AI.providerName]: "kvwarden", [GEN_AI.requestModel]: engine.model.config.name };
}

/**
 * Streams a Decode call. Its steps run under one `text_completion <model>`
 * span (GenAI conventions) with an event per token and a summary at the end;
 * evictions the decode budget runs become its children.
 */
export async function* decode(engine: Engine, request: DecodeRequest, scope: RpcScope, genAi: Record<string, string>): AsyncGenerator<DecodeResponse> {
  scope.annotate({ [KVWARDEN.sequenceId]: request.sequenceId, ...genAi, [GEN_AI.requestMaxTokens]: request.maxNewTokens });
  const input = decodeOf(request);
  const { sampling } = input;
  const span = tracer.startSpan(
    `${GEN_AI_OPERATION} ${genAi[GEN_AI.requestModel]}`,
    {
      attributes: {
        ...genAi,
        [KVWARDEN.sequenceId]: input.sequenceId,
        [GEN_AI.requestMaxTokens]: input.maxNewTokens,
        [GEN_AI.requestTemperature]: sampling.temperature,
        [GEN_AI.requestTopK]: sampling.topK,
        [GEN_AI.requestTopP]: sampling.topP,
        [GEN_AI.requestSeed]: Number(BigInt.asIntN(53, sampling.seed)),
        [GEN_AI.requestStream]: true,
      },
    },
    scope.context,
  );
  const spanContext = trace.setSpan(scope.context, span);
  const started = performance.now();
  const tokens = engine.decode({ ...input, backpressure: () => scope.backpressure() }, { caller: scope.caller, signal: scope.signal });
  let produced = 0;
  let output = "";
  let finishReason: string | undefined;
  try {
    for (;;) {
      // Resuming the engine in the span's context makes its eviction spans children of this one.
      const next = await context.with(spanContext, () => tokens.next());
      if (next.done) break;
      const token = next.value;
      if (produced === 0) span.setAttribute(GEN_AI.responseTimeToFirstChunk, (performance.now() - started) / 1000);
      finishReason = token.finishReason;
      span.addEvent("gen_ai.token", { [KVWARDEN.position]: token.position });
      yield {
        tokenId: token.tokenId,
        text: token.text,
        position: token.position,
        finishReason: token.finishReason ? FINISH_REASONS[token.finishReason] : FinishReason.FINISH_REASON_UNSPECIFIED,
        eviction: token.eviction && evictionResultOf(token.eviction),
      };
      // Counted once the caller took it: a token held back by a cancellation is not output.
      produced++;
      output += token.text;
    }
  } catch (error) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
    throw error;
  } finally {
    await tokens.return(undefined);
    span.setAttributes({
      [GEN_AI.usageOutputTokens]: produced,
      ...(finishReason ? { [GEN_AI.responseFinishReasons]: [finishReason] } : {}),
    });
    span.end();
    scope.annotate({ [GEN_AI.usageOutputTokens]: produced });
    scope.logContent(() => ({ output }));
  }
}
