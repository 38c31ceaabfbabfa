import type { Metadata } from "@grpc/grpc-js";
import { context, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type TextMapGetter } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { tracer } from "../../telemetry/tracer.js";
import { isServerError, rpcCallAttributes, rpcStatusAttributes, type RpcSemconv } from "../rpc-semconv.js";
import { observeOutcome } from "./call-outcome.js";
import type { ServerCall, ServerMiddleware } from "./server-call.js";

// W3C trace context is what callers send (TGI's router, OpenTelemetry SDKs); extracted here whether or not tracing is on.
const propagator = new W3CTraceContextPropagator();
const metadataGetter: TextMapGetter<Metadata> = {
  keys: (metadata) => Object.keys(metadata.getMap()),
  get: (metadata, key) => {
    const values = metadata.get(key).map(String);
    return values.length === 0 ? undefined : values;
  },
};

/**
 * A server span per call, continuing the caller's trace (RPC semantic
 * conventions as `semconv` picks them); the rest of the call runs in its
 * context, so spans the handler starts are its children.
 */
export function tracing(semconv: RpcSemconv): ServerMiddleware {
  return <T>(call: ServerCall, next: () => Promise<T>): Promise<T> => {
    const { service, method } = call;
    const parent = propagator.extract(ROOT_CONTEXT, call.transport.metadata, metadataGetter);
    const span = tracer.startSpan(`${service}/${method}`, { kind: SpanKind.SERVER, attributes: rpcCallAttributes(service, method, semconv) }, parent);
    call.scope.context = trace.setSpan(parent, span);
    return context.with(call.scope.context, () =>
      observeOutcome(call, next, ({ code, details }) => {
        span.setAttributes(rpcStatusAttributes(code, semconv));
        if (isServerError(code)) span.setStatus({ code: SpanStatusCode.ERROR, message: details });
        span.end();
      }),
    );
  };
}
