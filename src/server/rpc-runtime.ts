import { Metadata, status, type Deadline, type ServiceError, type handleServerStreamingCall, type handleUnaryCall } from "@grpc/grpc-js";
import { context, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type TextMapGetter } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { ANONYMOUS, type Caller } from "../engine/engine.js";
import { EngineError } from "../engine/engine-error.js";
import { GEN_AI, KVWARDEN } from "../telemetry/attributes.js";
import type { LogSink } from "../telemetry/json-log.js";
import type { KvwardenMetrics } from "../telemetry/metrics.js";
import { tracer } from "../telemetry/tracer.js";
import type { Authenticator, CredentialsOf } from "./authenticator.js";
import type { CallTracker } from "./call-tracker.js";
import { echo } from "./echo.js";
import { cancelledByDeadline } from "./deadline-cancel.js";
import { MalformedRequest } from "./malformed-request.js";
import { StreamFlow } from "./stream-flow.js";
import { isServerError, rpcCallAttributes, rpcStatusAttributes, type RpcSemconv } from "./rpc-semconv.js";
import { toServiceError, Unavailable } from "./status.js";
import type { TenantMetrics } from "./tenant-metrics.js";

/** What a handler sees of its call besides the request. */
export interface RpcScope {
  /** Aborts when the client cancels, the deadline passes, or shutdown cancels the call. */
  readonly signal: AbortSignal;
  /** The call's span context: parent for spans the handler starts. */
  readonly context: Context;
  /** Who is calling (set before the handler runs). */
  readonly caller: Caller;
  /** Adds attributes to the call's span and log line (strings bounded: see echo). */
  annotate(attributes: Attributes): void;
  /** Prompt or output text: added to the log line only when content logging is on (`fields` is not called otherwise), never to spans. */
  logContent(fields: () => Record<string, string>): void;
  /** Streams: pending while the client's buffer is full (until it drains or the call ends); undefined when it can take more. */
  backpressure(): Promise<void> | undefined;
}

/** Whether a method starts work (refused while loading or draining) or only reads and frees (always answered). */
export type Admission = "work" | "always";

export interface RpcRuntimeOptions {
  service: string;
  tracker: CallTracker;
  /** Throws Unavailable when new work cannot be taken (loading, draining). */
  admit(): void;
  metrics?: KvwardenMetrics;
  /** One line per finished call. */
  log?: LogSink;
  /** Log lines carry prompt and output text (off by default: it may be personal data). */
  logContent?: boolean;
  semconv: RpcSemconv;
  /** Decides each call's tenant; absent = everyone is anonymous. */
  authenticator?: Authenticator;
  tenantMetrics?: TenantMetrics;
}

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
 * Turns async handlers into grpc-js handlers, wrapping each call the way an
 * interceptor would: a server span continuing the caller's trace, admission
 * (UNAVAILABLE while loading or draining), cancellation, the status mapping,
 * metrics and one JSON log line.
 */
export class RpcRuntime {
  constructor(private readonly options: RpcRuntimeOptions) {}

  unary<Req, Res>(method: string, admission: Admission, handler: (request: Req, scope: RpcScope) => Promise<Res> | Res): handleUnaryCall<Req, Res> {
    return (call, callback) => {
      this.invoke(method, admission, call, call.request, handler).then(
        (response) => callback(null, response),
        (error: Partial<ServiceError>) => callback(error),
      );
    };
  }

  /**
   * Runs one call of any transport that can present itself as a SurfaceCall
   * (the HTTP front does): the same span, admission, metrics and log line as
   * a gRPC call. Rejects with the call's ServiceError, its `cause` the error the handler threw.
   */
  async invoke<Req, Res>(method: string, admission: Admission, call: SurfaceCall, request: Req, handler: (request: Req, scope: RpcScope) => Promise<Res> | Res): Promise<Res> {
    const active = this.begin(method, admission, call);
    try {
      const response = await this.run(active, admission, request, async () => handler(request, active.scope));
      active.finish(status.OK);
      return response;
    } catch (error) {
      const serviceError = toServiceError(error);
      active.finish(serviceError.code!, serviceError.details);
      throw Object.assign(serviceError, { cause: error });
    }
  }

  stream<Req, Res>(method: string, admission: Admission, handler: (request: Req, scope: RpcScope) => AsyncIterable<Res>): handleServerStreamingCall<Req, Res> {
    return (call) => {
      const active = this.begin(method, admission, call);
      const flow = new StreamFlow(call, active.scope.signal);
      active.scope.backpressure = () => flow.full;
      this.run(active, admission, call.request, async () => {
        for await (const message of handler(call.request, active.scope)) {
          if (active.scope.signal.aborted) break;
          flow.write(message);
        }
      }).then(
        () => {
          active.finish(status.OK);
          call.end();
        },
        (error: unknown) => {
          const serviceError = toServiceError(error);
          active.finish(serviceError.code!, serviceError.details);
          call.emit("error", serviceError);
        },
      );
    };
  }

  /** Records (span, metrics, log line) a call that authentication refused before its handler ran. */
  refused(method: string, metadata: Metadata, details: string): void {
    const call: SurfaceCall = { metadata, cancelled: false, getDeadline: () => Infinity, on: () => undefined, getAuthContext: () => ({}) };
    this.begin(method, "always", call).finish(status.UNAUTHENTICATED, details);
  }

  /**
   * Runs the handler in the call's context once the caller is known and the
   * request parsed; a call cut short by shutdown fails with UNAVAILABLE.
   */
  private async run<T>(active: ActiveCall, admission: Admission, request: unknown, work: () => Promise<T>): Promise<T> {
    const { signal } = active.scope;
    return context.with(active.scope.context, async () => {
      active.authenticate(this.options.authenticator);
      if (request instanceof MalformedRequest) throw new EngineError("INVALID_ARGUMENT", `the request body is not a valid message: ${request.reason}`);
      if (admission === "work") this.options.admit();
      let result: T;
      try {
        result = await work();
      } catch (error) {
        throw signal.reason instanceof Unavailable ? signal.reason : error;
      }
      if (signal.reason instanceof Unavailable) throw signal.reason;
      return result;
    });
  }

  private begin(method: string, admission: Admission, call: SurfaceCall): ActiveCall {
    const { service, tracker, metrics, log, logContent, semconv, tenantMetrics } = this.options;
    const started = performance.now();
    const parent = propagator.extract(ROOT_CONTEXT, call.metadata, metadataGetter);
    const span = tracer.startSpan(`${service}/${method}`, { kind: SpanKind.SERVER, attributes: rpcCallAttributes(service, method, semconv) }, parent);
    const attributes: Attributes = {};
    const content: Record<string, string> = {};
    const controller = new AbortController();
    const receivedAt = Date.now();
    const cancelled = () => controller.abort(cancelledByDeadline(call.getDeadline(), receivedAt, Date.now()) ? "deadline" : "cancelled");
    if (call.cancelled) cancelled();
    else call.on("cancelled", cancelled);
    const untrack = tracker.add(controller);
    metrics?.callStarted(admission === "work");
    const scope = {
      signal: controller.signal,
      context: trace.setSpan(parent, span),
      caller: ANONYMOUS,
      annotate(more: Attributes) {
        const bounded = Object.fromEntries(Object.entries(more).map(([key, value]) => [key, typeof value === "string" ? echo(value) : value]));
        Object.assign(attributes, bounded);
        span.setAttributes(bounded);
      },
      logContent(fields: () => Record<string, string>) {
        if (logContent) Object.assign(content, fields());
      },
      backpressure: (): Promise<void> | undefined => undefined,
    };
    let finished = false;
    return {
      scope,
      authenticate(authenticator) {
        if (authenticator) scope.caller = authenticator.callerOf(call);
      },
      finish(code, details) {
        if (finished) return;
        finished = true;
        untrack();
        // A cancelled call's client is gone; record what happened to it, not what the handler returned.
        const reason = controller.signal.reason;
        const final = reason === "deadline" ? status.DEADLINE_EXCEEDED : reason === "cancelled" ? status.CANCELLED : code;
        span.setAttributes(rpcStatusAttributes(final, semconv));
        if (isServerError(final)) span.setStatus({ code: SpanStatusCode.ERROR, message: details });
        span.end();
        const inputTokens = Number(attributes[GEN_AI.usageInputTokens] ?? 0);
        const outputTokens = Number(attributes[GEN_AI.usageOutputTokens] ?? 0);
        metrics?.callEnded(method, status[final], admission === "work");
        tenantMetrics?.callEnded(scope.caller.tenant, final);
        metrics?.tokens(inputTokens, outputTokens);
        const { traceId, spanId } = span.spanContext();
        log?.({
          level: final === status.OK ? "info" : isServerError(final) ? "error" : "warn",
          msg: "rpc",
          method: `${service}/${method}`,
          code: status[final],
          duration_ms: Math.round((performance.now() - started) * 1000) / 1000,
          ...(trace.isSpanContextValid(span.spanContext()) ? { trace_id: traceId, span_id: spanId } : {}),
          ...(scope.caller.tenant === "" ? {} : { tenant: scope.caller.tenant }),
          ...(attributes[KVWARDEN.sequenceId] === undefined ? {} : { sequence_id: attributes[KVWARDEN.sequenceId] }),
          ...(inputTokens > 0 ? { input_tokens: inputTokens } : {}),
          ...(outputTokens > 0 ? { output_tokens: outputTokens } : {}),
          ...(final === status.OK || !details ? {} : { error: details }),
          ...content,
        });
      },
    };
  }
}

/** What every grpc-js server call offers (grpc-js does not export its own name for it). */
export interface SurfaceCall extends CredentialsOf {
  readonly metadata: Metadata;
  readonly cancelled: boolean;
  getDeadline(): Deadline;
  on(event: "cancelled", listener: () => void): unknown;
}

interface ActiveCall {
  scope: RpcScope;
  /** Sets the scope's caller; throws Unauthenticated. */
  authenticate(authenticator: Authenticator | undefined): void;
  finish(code: status, details?: string): void;
}
