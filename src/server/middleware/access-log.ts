import { status } from "@grpc/grpc-js";
import { trace } from "@opentelemetry/api";
import { GEN_AI, KVWARDEN } from "../../telemetry/attributes.js";
import type { LogSink } from "../../telemetry/json-log.js";
import { isServerError } from "../rpc-semconv.js";
import { tokensOf } from "./call-metrics.js";
import { observeOutcome } from "./call-outcome.js";
import type { ServerCall, ServerMiddleware } from "./server-call.js";

/**
 * One JSON line per finished call: method, code, duration, trace, tenant,
 * sequence, tokens and error; with `logContent`, the prompt and output text
 * the handler offers (off by default: it may be personal data).
 */
export function accessLog(log: LogSink, logContent: boolean): ServerMiddleware {
  return <T>(call: ServerCall, next: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    const content: Record<string, string> = {};
    if (logContent) call.scope.logContent = (fields) => Object.assign(content, fields());
    return observeOutcome(call, next, ({ code, details }) => {
      const { caller } = call.scope;
      const spanContext = trace.getSpanContext(call.scope.context);
      const inputTokens = tokensOf(call, GEN_AI.usageInputTokens);
      const outputTokens = tokensOf(call, GEN_AI.usageOutputTokens);
      const sequenceId = call.attributes[KVWARDEN.sequenceId];
      log({
        level: code === status.OK ? "info" : isServerError(code) ? "error" : "warn",
        msg: "rpc",
        method: `${call.service}/${call.method}`,
        code: status[code],
        duration_ms: Math.round((performance.now() - started) * 1000) / 1000,
        ...(spanContext && trace.isSpanContextValid(spanContext) ? { trace_id: spanContext.traceId, span_id: spanContext.spanId } : {}),
        ...(caller.tenant === "" ? {} : { tenant: caller.tenant }),
        ...(sequenceId === undefined ? {} : { sequence_id: sequenceId }),
        ...(inputTokens > 0 ? { input_tokens: inputTokens } : {}),
        ...(outputTokens > 0 ? { output_tokens: outputTokens } : {}),
        ...(code === status.OK || !details ? {} : { error: details }),
        ...content,
      });
    });
  };
}
