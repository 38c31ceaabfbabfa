import type { DecodeInput, PrefillInput } from "../engine/engine.js";
import { EngineError } from "../engine/engine-error.js";
import type { SamplingParams } from "../model/sampling/sampler.js";
import { SeededRandom } from "../numerics/seeded-random.js";
import type { EvictionSpec as PolicySpec } from "../policies/policy.js";
import type {
  DecodeRequest,
  EvictRequest,
  ForkRequest,
  OffloadRequest,
  PrefillRequest,
  ReleaseRequest,
  Sampling,
  StatsRequest,
  TruncateRequest,
} from "../gen/kvwarden/v1/kvwarden.js";
import { evictionSpecOf } from "./eviction-spec.js";

/*
 * Every KvCache request is checked here, one function per request kind,
 * before the engine sees it: a field out of bounds is INVALID_ARGUMENT naming
 * the field, and nothing has changed. What only the model can judge (token ids
 * against the vocabulary, prompt length) the engine checks.
 */

/** A Prefill as the engine takes it, and its request id. */
export function prefillOf(request: PrefillRequest): { input: PrefillInput; requestId?: string } {
  const input = {
    sequenceId: sequenceIdOf(request),
    tokenIds: request.tokenIds,
    text: request.text,
    messages: request.messages,
    eviction: request.eviction && evictionSpecOf(request.eviction),
    logprobs: logprobsOf(request),
  };
  return { input, requestId: requestIdOf(request) };
}

export function decodeOf(request: DecodeRequest): DecodeInput {
  return {
    sequenceId: sequenceIdOf(request),
    maxNewTokens: request.maxNewTokens,
    sampling: samplingOf(request.sampling),
    stopTokenIds: request.stopTokenIds,
    ignoreEos: request.ignoreEos,
    eviction: request.eviction && evictionSpecOf(request.eviction),
  };
}

export function evictOf(request: EvictRequest): { sequenceId: string; spec: PolicySpec; requestId?: string } {
  const sequenceId = sequenceIdOf(request);
  if (!request.eviction) throw new EngineError("INVALID_ARGUMENT", "eviction is required");
  return { sequenceId, spec: evictionSpecOf(request.eviction), requestId: requestIdOf(request) };
}

/** A Stats request: an empty sequence_id asks about the whole server. */
export function statsOf(request: StatsRequest): { sequenceId?: string; includePositions: boolean; includeTokenIds: boolean } {
  const sequenceId = request.sequenceId === "" ? undefined : sequenceIdOf(request);
  return { sequenceId, includePositions: request.includePositions, includeTokenIds: request.includeTokenIds };
}

export function truncateOf(request: TruncateRequest): { sequenceId: string; length: number; requestId?: string } {
  return { sequenceId: sequenceIdOf(request), length: request.length, requestId: requestIdOf(request) };
}

/** Release and Offload: a sequence and a request id. */
export function sequenceCallOf(request: ReleaseRequest | OffloadRequest): { sequenceId: string; requestId?: string } {
  return { sequenceId: sequenceIdOf(request), requestId: requestIdOf(request) };
}

export function forkOf(request: ForkRequest): { sequenceId: string; newSequenceId: string; requestId?: string } {
  const newSequenceId = sequenceIdOf({ sequenceId: request.newSequenceId }, "new_sequence_id");
  return { sequenceId: sequenceIdOf(request), newSequenceId, requestId: requestIdOf(request) };
}

/** Longest accepted sequence id, in UTF-8 bytes; ids are map keys and appear in logs and traces. */
const MAX_SEQUENCE_ID_BYTES = 256;

export function sequenceIdOf(request: { sequenceId: string }, field = "sequence_id"): string {
  const id = request.sequenceId;
  if (id.length === 0) throw new EngineError("INVALID_ARGUMENT", `${field} is required`);
  const bytes = Buffer.byteLength(id);
  if (bytes > MAX_SEQUENCE_ID_BYTES) {
    throw new EngineError("INVALID_ARGUMENT", `${field} is ${bytes} bytes long; the limit is ${MAX_SEQUENCE_ID_BYTES}`);
  }
  return id;
}

/** Longest accepted request id; ids are remembered for the sequence TTL. */
const MAX_REQUEST_ID_LENGTH = 256;

/** A request's optional request_id (undefined when empty). */
export function requestIdOf(request: { requestId: string }): string | undefined {
  const id = request.requestId;
  if (id.length > MAX_REQUEST_ID_LENGTH) {
    throw new EngineError("INVALID_ARGUMENT", `request_id is ${id.length} characters long; the limit is ${MAX_REQUEST_ID_LENGTH}`);
  }
  return id === "" ? undefined : id;
}

/** Most alternatives a caller may ask for per scored position. */
const MAX_TOP_LOGPROBS = 20;

/** What Prefill is asked to score: return_logprobs, with top_logprobs alternatives and, with return_distribution, every token's. */
function logprobsOf(request: PrefillRequest): PrefillInput["logprobs"] {
  if (!request.returnLogprobs) {
    if (request.topLogprobs > 0 || request.returnDistribution) {
      throw new EngineError("INVALID_ARGUMENT", `${request.returnDistribution ? "return_distribution" : "top_logprobs"} needs return_logprobs`);
    }
    return undefined;
  }
  if (request.topLogprobs > MAX_TOP_LOGPROBS) throw new EngineError("INVALID_ARGUMENT", `top_logprobs is ${request.topLogprobs}; the limit is ${MAX_TOP_LOGPROBS}`);
  return { top: request.topLogprobs, distribution: request.returnDistribution };
}

function samplingOf(sampling: Sampling | undefined): SamplingParams {
  const seed = sampling?.seed === undefined ? SeededRandom.randomSeed() : BigInt(sampling.seed);
  const params = { temperature: sampling?.temperature ?? 0, topK: sampling?.topK ?? 0, topP: sampling?.topP ?? 0, seed };
  if (!(params.temperature >= 0 && Number.isFinite(params.temperature))) {
    throw new EngineError("INVALID_ARGUMENT", `sampling.temperature must be a finite number >= 0, got ${params.temperature}`);
  }
  if (!(params.topP >= 0 && params.topP <= 1)) throw new EngineError("INVALID_ARGUMENT", `sampling.top_p must be in [0, 1], got ${params.topP}`);
  return params;
}
