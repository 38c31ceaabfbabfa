import { status, type ServiceError } from "@grpc/grpc-js";
import { toServiceError } from "../server/status.js";

/** OpenAI's error object, as its SDKs parse it. */
export interface OpenAiErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** A refusal the HTTP front decides itself (no gRPC status fits exactly), e.g. 404 unknown model or 409 session conflict. */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    readonly type: string,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

/** A request field that breaks its rule: 400, naming the field as OpenAI's `param`. */
export class InvalidField extends HttpError {
  constructor(param: string, message: string) {
    super(400, "invalid_request_error", message, param, "invalid_value");
  }
}

/** Seconds a client should wait before retrying a 429 or 503 (load changes within a second or so). */
const RETRY_AFTER_SECONDS = "1";

/** HTTP status and OpenAI error type per gRPC status, so that both transports say the same thing. */
const BY_GRPC_STATUS: Partial<Record<status, [number, string]>> = {
  [status.INVALID_ARGUMENT]: [400, "invalid_request_error"],
  [status.OUT_OF_RANGE]: [400, "invalid_request_error"],
  [status.FAILED_PRECONDITION]: [400, "invalid_request_error"],
  [status.UNAUTHENTICATED]: [401, "authentication_error"],
  [status.PERMISSION_DENIED]: [403, "permission_error"],
  [status.NOT_FOUND]: [404, "not_found_error"],
  [status.ALREADY_EXISTS]: [409, "conflict_error"],
  [status.ABORTED]: [409, "conflict_error"],
  [status.RESOURCE_EXHAUSTED]: [429, "rate_limit_error"],
  [status.CANCELLED]: [499, "cancelled"],
  [status.UNAVAILABLE]: [503, "service_unavailable_error"],
  [status.DEADLINE_EXCEEDED]: [504, "timeout_error"],
};

export interface OpenAiErrorReply {
  statusCode: number;
  headers: Record<string, string>;
  body: OpenAiErrorBody;
}

/**
 * Any failure as OpenAI's error object with the right HTTP status: an
 * HttpError as it says, anything else through the gRPC status mapping
 * (toServiceError), its code named in lower case (`resource_exhausted`).
 */
export function openAiErrorOf(error: unknown): OpenAiErrorReply {
  const cause = error instanceof HttpError ? error : (error as { cause?: unknown } | undefined)?.cause;
  if (cause instanceof HttpError) return reply(cause.statusCode, cause.type, cause.message, cause.param, cause.code);
  const serviceError = isServiceError(error) ? error : toServiceError(error);
  const code = serviceError.code ?? status.INTERNAL;
  const [statusCode, type] = BY_GRPC_STATUS[code] ?? [500, "server_error"];
  return reply(statusCode, type, serviceError.details ?? "internal error", null, status[code].toLowerCase());
}

function reply(statusCode: number, type: string, message: string, param: string | null, code: string | null): OpenAiErrorReply {
  const headers: Record<string, string> = statusCode === 429 || statusCode === 503 ? { "retry-after": RETRY_AFTER_SECONDS } : {};
  return { statusCode, headers, body: { error: { message, type, param, code } } };
}

function isServiceError(error: unknown): error is Partial<ServiceError> {
  return typeof error === "object" && error !== null && typeof (error as ServiceError).code === "number" && typeof (error as ServiceError).details === "string";
}
