import { status } from "@grpc/grpc-js";
import type { Attributes } from "@opentelemetry/api";

/** Which RPC semantic conventions spans follow: the long-established names, the reworked stable ones, or both. */
export type RpcSemconv = "old" | "stable" | "dup";

/** OTEL_SEMCONV_STABILITY_OPT_IN=rpc switches to the stable names, rpc/dup emits both (as OpenTelemetry instrumentations do). */
export function rpcSemconv(env: Readonly<Record<string, string | undefined>> = process.env): RpcSemconv {
  const options = (env.OTEL_SEMCONV_STABILITY_OPT_IN ?? "").split(",").map((option) => option.trim());
  return options.includes("rpc/dup") ? "dup" : options.includes("rpc") ? "stable" : "old";
}

/** A server span's attributes when the call arrives. */
export function rpcCallAttributes(service: string, method: string, semconv: RpcSemconv): Attributes {
  const old = { "rpc.system": "grpc", "rpc.service": service, "rpc.method": method };
  const stable = { "rpc.system.name": "grpc", "rpc.method": `${service}/${method}` };
  return semconv === "old" ? old : semconv === "stable" ? stable : { ...old, ...stable };
}

/** A server span's attributes when the call ends with `code`. */
export function rpcStatusAttributes(code: status, semconv: RpcSemconv): Attributes {
  const name = status[code];
  const old = { "rpc.grpc.status_code": code };
  const stable = { "rpc.status_code": name, ...(code === status.OK ? {} : { "error.type": name }) };
  return semconv === "old" ? old : semconv === "stable" ? stable : { ...old, ...stable };
}

/** Server-side codes that mark a span as failed: the server's fault, not the caller's (RPC conventions). */
const SERVER_ERRORS = new Set([status.UNKNOWN, status.DEADLINE_EXCEEDED, status.UNIMPLEMENTED, status.INTERNAL, status.UNAVAILABLE, status.DATA_LOSS]);

export function isServerError(code: status): boolean {
  return SERVER_ERRORS.has(code);
}
