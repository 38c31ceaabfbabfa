import { SpanStatusCode } from "@opentelemetry/api";
import { KVWARDEN } from "./attributes.js";
import { tracer } from "./tracer.js";

/** Why a sequence left memory (docs/kv-store.md, "States"); a restore is always "explicit" or the call that named it. */
export type StoreReason = "idle" | "pressure" | "shutdown" | "explicit";

export type StoreOperation = "offload" | "restore";

/** One offload or restore that finished. */
export interface StoreTransfer {
  operation: StoreOperation;
  reason: StoreReason;
  bytes: number;
  chunks: number;
  seconds: number;
}

/** What the KV store tier reports to whoever watches it (metrics). */
export interface StoreListener {
  transfer(transfer: StoreTransfer): void;
  /** An operation failed; `code` is the gRPC status name it answered with (RESOURCE_EXHAUSTED: the store is full). */
  storeError(operation: StoreOperation, code: string): void;
}

/**
 * Runs one offload or restore under a `kvwarden.<operation>` span carrying its reason, bytes,
 * chunks and duration, and tells `listener`; `run` resolves with the bytes and chunks moved.
 */
export async function observeTransfer<T extends { bytes: number; chunks: number }>(
  listener: Partial<StoreListener>,
  operation: StoreOperation,
  reason: StoreReason,
  sequenceId: string,
  run: () => Promise<T>,
): Promise<T> {
  return tracer.startActiveSpan(`kvwarden.${operation}`, { attributes: { [KVWARDEN.sequenceId]: sequenceId, [KVWARDEN.storeReason]: reason } }, async (span) => {
    const started = performance.now();
    try {
      const result = await run();
      const seconds = (performance.now() - started) / 1000;
      span.setAttributes({ [KVWARDEN.storeBytes]: result.bytes, [KVWARDEN.storeChunks]: result.chunks, [KVWARDEN.storeSeconds]: seconds });
      listener.transfer?.({ operation, reason, bytes: result.bytes, chunks: result.chunks, seconds });
      return result;
    } catch (error) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
      const code = (error as { code?: unknown }).code;
      listener.storeError?.(operation, typeof code === "string" ? code : "INTERNAL");
      throw error;
    } finally {
      span.end();
    }
  });
}
