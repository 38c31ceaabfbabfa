import { Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { EngineError } from "../engine/engine-error.js";
import { KvBudgetExceeded } from "../kv/slab-pool.js";
import { KvStoreError } from "../kv/store/store-errors.js";
import { InvalidEvictionError } from "../policies/policy.js";
import { echo } from "./echo.js";

/** The server cannot take the call now (model loading, shutting down); clients may retry elsewhere or later. */
export class Unavailable extends Error {}

/** The call carries no valid credentials (bearer token or client certificate). */
export class Unauthenticated extends Error {}

/** The request message was over the receive limit (grpc-js refused it unread; this records it). */
export class MessageTooLarge extends Error {}

/** Turns any failure into a gRPC error whose status says whose fault it was; its message is bounded (echo). */
export function toServiceError(error: unknown): Partial<ServiceError> {
  const serviceError = statusOf(error);
  return { ...serviceError, details: echo(serviceError.details!) };
}

function statusOf(error: unknown): Partial<ServiceError> {
  if (error instanceof EngineError) return { code: status[error.code], details: error.message, metadata: new Metadata() };
  // The store's errors name their status (docs/kv-store.md, "Failure modes"): UNAVAILABLE, DATA_LOSS, ABORTED naming the holder...
  if (error instanceof KvStoreError) return { code: status[error.code], details: error.message, metadata: new Metadata() };
  if (error instanceof InvalidEvictionError) return { code: status.INVALID_ARGUMENT, details: error.message, metadata: new Metadata() };
  // The engine maps the budget errors it expects; any other one is still the budget, not a server fault.
  if (error instanceof KvBudgetExceeded) return { code: status.RESOURCE_EXHAUSTED, details: error.message, metadata: new Metadata() };
  if (error instanceof Unavailable) return { code: status.UNAVAILABLE, details: error.message, metadata: new Metadata() };
  if (error instanceof Unauthenticated) return { code: status.UNAUTHENTICATED, details: error.message, metadata: new Metadata() };
  if (error instanceof MessageTooLarge) return { code: status.RESOURCE_EXHAUSTED, details: error.message, metadata: new Metadata() };
  const message = error instanceof Error ? error.message : String(error);
  return { code: status.INTERNAL, details: `internal error: ${message}`, metadata: new Metadata() };
}
