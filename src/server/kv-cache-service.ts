import type { ServerUnaryCall, ServerWritableStream, sendUnaryData } from "@grpc/grpc-js";
import type { Engine } from "../engine/engine.js";
import { EngineError } from "../engine/engine-error.js";
import {
  FinishReason,
  type DecodeRequest,
  type DecodeResponse,
  type EvictRequest,
  type EvictResponse,
  type InfoRequest,
  type InfoResponse,
  type KvCacheServer,
  type PrefillRequest,
  type PrefillResponse,
  type ReleaseRequest,
  type ReleaseResponse,
  type StatsRequest,
  type StatsResponse,
} from "../gen/kvwarden/v1/kvwarden.js";
import { POLICIES, snakeCase } from "../policies/registry.js";
import { decodeInputOf, evictionResultOf, evictionSpecOf, sequenceIdOf, sequenceStatsOf, topLogprobsOf } from "./proto-mapping.js";
import { toServiceError } from "./status.js";

const FINISH_REASONS = { length: FinishReason.FINISH_REASON_LENGTH, stop: FinishReason.FINISH_REASON_STOP, context: FinishReason.FINISH_REASON_CONTEXT };

/** An AbortSignal that fires when the client cancels or the deadline passes. */
function signalOf(call: { on(event: "cancelled", listener: () => void): unknown; cancelled: boolean }): AbortSignal {
  const controller = new AbortController();
  if (call.cancelled) controller.abort();
  call.on("cancelled", () => controller.abort());
  return controller.signal;
}

/** Answers a unary call from an async handler, mapping failures to statuses. */
function unary<Req, Res>(handler: (request: Req, call: ServerUnaryCall<Req, Res>) => Promise<Res> | Res) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
    Promise.resolve()
      .then(() => handler(call.request, call))
      .then((response) => callback(null, response), (error) => callback(toServiceError(error)));
  };
}

export interface ServiceInfo {
  executionProvider: string;
  version: string;
}

/** The KvCache gRPC service over an engine: message mapping only, no logic. */
export function kvCacheService(engine: Engine, info: ServiceInfo): KvCacheServer {
  return {
    prefill: unary<PrefillRequest, PrefillResponse>(async (request, call) => {
      const outcome = await engine.prefill(
        {
          sequenceId: sequenceIdOf(request),
          tokenIds: request.tokenIds,
          text: request.text,
          eviction: request.eviction && evictionSpecOf(request.eviction),
          logprobs: request.returnLogprobs ? { top: topLogprobsOf(request.topLogprobs) } : undefined,
        },
        signalOf(call),
      );
      return {
        sequenceId: outcome.sequenceId,
        promptTokens: outcome.promptTokens,
        position: outcome.position,
        kvBytes: BigInt(outcome.kvBytes),
        eviction: outcome.eviction && evictionResultOf(outcome.eviction),
        tokenIds: outcome.tokenIds,
        logprobs: outcome.logprobs ?? [],
      };
    }),

    decode: (call: ServerWritableStream<DecodeRequest, DecodeResponse>) => {
      const signal = signalOf(call);
      (async () => {
        for await (const token of engine.decode(decodeInputOf(call.request), signal)) {
          if (signal.aborted) break;
          call.write({
            tokenId: token.tokenId,
            text: token.text,
            position: token.position,
            finishReason: token.finishReason ? FINISH_REASONS[token.finishReason] : FinishReason.FINISH_REASON_UNSPECIFIED,
            eviction: token.eviction && evictionResultOf(token.eviction),
          });
        }
      })().then(
        () => call.end(),
        (error) => call.emit("error", toServiceError(error)),
      );
    },

    evict: unary<EvictRequest, EvictResponse>(async (request) => {
      const sequenceId = sequenceIdOf(request);
      if (!request.eviction) throw new EngineError("INVALID_ARGUMENT", "eviction is required");
      const outcome = await engine.evict(sequenceId, evictionSpecOf(request.eviction));
      return { sequenceId, eviction: evictionResultOf(outcome) };
    }),

    stats: unary<StatsRequest, StatsResponse>((request) => {
      const stats = engine.stats(request.sequenceId || undefined, request.includePositions);
      return {
        kvBytesUsed: BigInt(stats.kvBytesUsed),
        kvBytesBudget: BigInt(stats.kvBytesBudget),
        kvBytesPooled: BigInt(stats.kvBytesPooled),
        sequenceCount: stats.sequenceCount,
        sequences: stats.sequences.map(sequenceStatsOf),
      };
    }),

    release: unary<ReleaseRequest, ReleaseResponse>((request) => {
      const { found, freedBytes } = engine.release(sequenceIdOf(request));
      return { found, freedBytes: BigInt(freedBytes) };
    }),

    info: unary<InfoRequest, InfoResponse>(() => {
      const { config, tokenizer } = engine.model;
      const { options } = engine;
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
          dtype: "float32",
          kvDtype: "float32",
          bosTokenId: tokenizer.bosId,
          eosTokenId: tokenizer.eosId,
        },
        executionProvider: info.executionProvider,
        policies: [...POLICIES.values()].map((policy) => ({
          name: policy.name,
          description: policy.description,
          parameters: policy.parameters.map((p) => ({ name: snakeCase(p.name), description: p.description, defaultValue: String(p.defaultValue) })),
        })),
        limits: {
          kvBytesBudget: BigInt(options.kvBudgetBytes),
          maxSequenceTokens: options.maxSequenceTokens,
          allowPastContext: options.allowPastContext,
          prefillChunkTokens: options.prefillChunkTokens,
          sequenceTtlMs: BigInt(options.sequenceTtlMs),
        },
        version: info.version,
      };
    }),
  };
}
