import { SpanStatusCode, trace } from "@opentelemetry/api";
import { KVWARDEN } from "./attributes.js";
import { observeTransfer, type StoreListener, type StoreOperation, type StoreReason } from "./store-telemetry.js";
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

/** What the engine reports to whoever watches it (metrics); each report is optional. */
export interface EngineListener extends Partial<StoreListener> {
  /** `sequences`: how many sequences the step ran for (a decode batch's size). */
  step?(kind: StepKind, seconds: number, sequences: number): void;
  eviction?(outcome: EvictionRecord): void;
  /** Memory pressure from a call of `requester` compressed an idle sequence of `owner`. */
  crossTenantCompression?(owner: string, requester: string): void;
}

/**
 * Whether the work at hand belongs to a sampled trace, the gate for costly
 * measurements: the sampler (OTEL_TRACES_SAMPLER) then bounds what they cost.
 */
export function inSampledTrace(): boolean {
  return trace.getActiveSpan()?.isRecording() === true;
}

/**
 * The engine's telemetry: spans for its steps, evictions and store
 * transfers, and reports to `listener` (the metrics). The engine is given one
 * (EngineOptions.telemetry, wired by `kvwarden serve`) rather than reporting
 * to listeners of the process: two engines in one process report apart.
 */
export class EngineTelemetry {
  constructor(private readonly listener: EngineListener = {}) {}

  /** Whether the costly measurements (the evicted attention share) are wanted now: inside a sampled trace. */
  measuring(): boolean {
    return inSampledTrace();
  }

  /**
   * Times one model step. A prefill chunk gets a span; a decode step does not
   * (the Decode call's span summarizes its steps), but both feed the latency histograms.
   */
  async observeStep<T>(kind: StepKind, sequenceId: string, tokens: number, firstPosition: number, run: () => Promise<T>, sequences = 1): Promise<T> {
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
      this.listener.step?.(kind, (performance.now() - start) / 1000, sequences);
    }
  }

  /**
   * Records an eviction that ran from `startTime` until now as a span. Both ends
   * are read from performance.now(): a start on the epoch clock and an end the
   * SDK reads from Date.now() (millisecond steps) could come out of order.
   */
  evicted(sequenceId: string, outcome: EvictionRecord, startTime: number): void {
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
    this.listener.eviction?.(outcome);
  }

  /**
   * Records that memory pressure from a call of tenant `requester` compressed an
   * idle sequence of tenant `owner`: an event on the call's span (the eviction's
   * own span is its child) and a count.
   */
  crossTenantCompression(owner: string, requester: string, outcome: EvictionRecord): void {
    trace.getActiveSpan()?.addEvent("kvwarden.cross_tenant_compression", {
      [KVWARDEN.compressedTenant]: owner,
      [KVWARDEN.tenant]: requester,
      [KVWARDEN.policy]: outcome.policy,
      [KVWARDEN.bytesBefore]: outcome.bytesBefore,
      [KVWARDEN.bytesAfter]: outcome.bytesAfter,
    });
    this.listener.crossTenantCompression?.(owner, requester);
  }

  /** Runs one offload or restore of the KV store tier under its span (store-telemetry.ts), and reports it. */
  observeTransfer<T extends { bytes: number; chunks: number }>(operation: StoreOperation, reason: StoreReason, sequenceId: string, run: () => Promise<T>): Promise<T> {
    return observeTransfer(this.listener, operation, reason, sequenceId, run);
  }
}
