import { SpanStatusCode, trace } from "@opentelemetry/api";
import { KVWARDEN } from "./attributes.js";
import { tracer } from "./tracer.js";

export type StepKind = "prefill" | "decode";

/** What telemetry records of an eviction (the engine's EvictionOutcome has these fields). */
export interface EvictionRecord {
  policy: string;
  applied: boolean;
  budgetTokens: number;
  entriesBefore: number;
  entriesAfter: number;
  bytesBefore: number;
  bytesAfter: number;
  entryBytesBefore: number;
  entryBytesAfter: number;
  lazyLayers: number[];
  detail: string;
  evictedAttentionShare?: number;
}

/** What the engine reports to whoever watches it (metrics). */
export interface EngineListener {
  /** `sequences`: how many sequences the step ran for (a decode batch's size). */
  step(kind: StepKind, seconds: number, sequences: number): void;
  eviction(outcome: EvictionRecord): void;
  /** Memory pressure from a call of `requester` compressed an idle sequence of `owner`. */
  crossTenantCompression?(owner: string, requester: string): void;
}

/**
 * The engine's reports, process-wide: the engine calls these functions (and
 * hands `evictionTelemetry` to the eviction code it runs) rather than holding a
 * telemetry object. A process serves one engine, so listeners need no filter.
 */
const listeners = new Set<EngineListener>();

export function addEngineListener(listener: EngineListener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/**
 * Whether the work at hand belongs to a sampled trace, the gate for costly
 * measurements: the sampler (OTEL_TRACES_SAMPLER) then bounds what they cost.
 */
export function inSampledTrace(): boolean {
  return trace.getActiveSpan()?.isRecording() === true;
}

/**
 * Times one model step. A prefill chunk gets a span; a decode step does not
 * (the Decode call's span summarizes its steps), but both feed the latency histograms.
 */
export async function observeStep<T>(
  kind: StepKind,
  sequenceId: string,
  tokens: number,
  firstPosition: number,
  run: () => Promise<T>,
  sequences = 1,
): Promise<T> {
  const span =
    kind === "prefill"
      ? tracer.startSpan("kvwarden.prefill_chunk", {
          attributes: { [KVWARDEN.sequenceId]: sequenceId, [KVWARDEN.chunkTokens]: tokens, [KVWARDEN.chunkFirstPosition]: firstPosition },
        })
      : undefined;
  const start = performance.now();
  try {
    return await run();
  } catch (error) {
    span?.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
    throw error;
  } finally {
    span?.end();
    const seconds = (performance.now() - start) / 1000;
    for (const listener of listeners) listener.step(kind, seconds, sequences);
  }
}

/**
 * Records an eviction that ran from `startTime` until now as a span. Both ends
 * are read from performance.now(): a start on the epoch clock and an end the
 * SDK reads from Date.now() (millisecond steps) could come out of order.
 */
export function observeEviction(sequenceId: string, outcome: EvictionRecord, startTime: number): void {
  const attributes = {
    [KVWARDEN.sequenceId]: sequenceId,
    [KVWARDEN.policy]: outcome.policy,
    [KVWARDEN.applied]: outcome.applied,
    [KVWARDEN.budgetTokens]: outcome.budgetTokens,
    [KVWARDEN.entriesBefore]: outcome.entriesBefore,
    [KVWARDEN.entriesAfter]: outcome.entriesAfter,
    [KVWARDEN.bytesBefore]: outcome.bytesBefore,
    [KVWARDEN.bytesAfter]: outcome.bytesAfter,
    [KVWARDEN.entryBytesBefore]: outcome.entryBytesBefore,
    [KVWARDEN.entryBytesAfter]: outcome.entryBytesAfter,
    [KVWARDEN.lazyLayers]: outcome.lazyLayers,
    ...(outcome.evictedAttentionShare === undefined ? {} : { [KVWARDEN.evictedAttentionShare]: outcome.evictedAttentionShare }),
    ...(outcome.detail ? { [KVWARDEN.detail]: outcome.detail } : {}),
  };
  tracer.startSpan("kvwarden.evict", { startTime, attributes }).end(performance.now());
  for (const listener of listeners) listener.eviction(outcome);
}

/**
 * Records that memory pressure from a call of tenant `requester` compressed an
 * idle sequence of tenant `owner`: an event on the call's span (the eviction's
 * own span is its child) and a count.
 */
export function observeCrossTenantCompression(owner: string, requester: string, outcome: EvictionRecord): void {
  trace.getActiveSpan()?.addEvent("kvwarden.cross_tenant_compression", {
    [KVWARDEN.compressedTenant]: owner,
    [KVWARDEN.tenant]: requester,
    [KVWARDEN.policy]: outcome.policy,
    [KVWARDEN.bytesBefore]: outcome.bytesBefore,
    [KVWARDEN.bytesAfter]: outcome.bytesAfter,
  });
  for (const listener of listeners) listener.crossTenantCompression?.(owner, requester);
}

/** The eviction observer the engine gives eviction code by default: a span per eviction, and the listeners told. */
export const evictionTelemetry = { measuring: inSampledTrace, evicted: observeEviction };
