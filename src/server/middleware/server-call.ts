import type { Deadline } from "@grpc/grpc-js";
import { ROOT_CONTEXT, trace, type Attributes, type Context } from "@opentelemetry/api";
import { ANONYMOUS, type Caller } from "../../engine/engine.js";
import type { CredentialsOf } from "../authenticator.js";
import { echo } from "../echo.js";

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

/** What every grpc-js server call offers (grpc-js does not export its own name for it); the HTTP front presents its requests so. */
export interface SurfaceCall extends CredentialsOf {
  readonly metadata: Metadata;
  readonly cancelled: boolean;
  getDeadline(): Deadline;
  on(event: "cancelled", listener: () => void): unknown;
}

type Metadata = CredentialsOf["metadata"];

/** The scope as middleware fills it in: the span's context, the caller, where content goes. */
export type CallScope = { -readonly [K in keyof RpcScope]: RpcScope[K] };

/** One call as the middleware sees it. */
export interface ServerCall {
  /** `kvwarden.v1.KvCache`, or `openai.v1` for the HTTP front. */
  readonly service: string;
  readonly method: string;
  readonly admission: Admission;
  readonly transport: SurfaceCall;
  /** The decoded request (a MalformedRequest when the body did not parse). */
  readonly request: unknown;
  /** Aborted by cancellation (client, deadline) or by shutdown; its reason says which. */
  readonly abort: AbortController;
  readonly scope: CallScope;
  /** What the handler annotated (bounded), for the log line and the token counters. */
  readonly attributes: Attributes;
}

/**
 * One concern wrapped around every call (tracing, metrics, authentication...):
 * it may act before `next`, after it, or refuse the call by throwing.
 */
export type ServerMiddleware = <T>(call: ServerCall, next: () => Promise<T>) => Promise<T>;

export function newServerCall(service: string, method: string, admission: Admission, transport: SurfaceCall, request: unknown): ServerCall {
  const abort = new AbortController();
  const attributes: Attributes = {};
  const scope: CallScope = {
    signal: abort.signal,
    context: ROOT_CONTEXT,
    caller: ANONYMOUS,
    annotate(more: Attributes) {
      const bounded = Object.fromEntries(Object.entries(more).map(([key, value]) => [key, typeof value === "string" ? echo(value) : value]));
      Object.assign(attributes, bounded);
      trace.getSpan(scope.context)?.setAttributes(bounded);
    },
    logContent: () => undefined,
    backpressure: () => undefined,
  };
  return { service, method, admission, transport, request, abort, scope, attributes };
}
