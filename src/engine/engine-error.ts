/** Failure kinds the engine reports; the server maps each to a gRPC status. */
export type EngineErrorCode = "INVALID_ARGUMENT" | "NOT_FOUND" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" | "ABORTED" | "RESOURCE_EXHAUSTED" | "CANCELLED" | "DEADLINE_EXCEEDED" | "ALREADY_EXISTS";

export class EngineError extends Error {
  constructor(
    readonly code: EngineErrorCode,
    message: string,
  ) {
    super(message);
  }
}
