import type { LogSink } from "../../telemetry/json-log.js";
import type { KvwardenMetrics } from "../../telemetry/metrics.js";
import type { Authenticator } from "../authenticator.js";
import type { CallTracker } from "../call-tracker.js";
import type { RpcSemconv } from "../rpc-semconv.js";
import type { TenantMetrics } from "../tenant-metrics.js";
import { accessLog } from "./access-log.js";
import { admission } from "./admission.js";
import { authentication } from "./authentication.js";
import { callMetrics } from "./call-metrics.js";
import { callTracking } from "./call-tracking.js";
import { cancellation } from "./cancellation.js";
import { composeMiddleware } from "./compose-middleware.js";
import type { ServerMiddleware } from "./server-call.js";
import { tracing } from "./tracing.js";
import { wellFormedBody } from "./well-formed-body.js";

export interface ServerMiddlewareOptions {
  tracker: CallTracker;
  /** Throws Unavailable when new work cannot be taken (loading, draining). */
  admit(): void;
  semconv: RpcSemconv;
  metrics?: KvwardenMetrics;
  tenantMetrics?: TenantMetrics;
  /** One line per finished call. */
  log?: LogSink;
  /** Log lines carry prompt and output text (off by default: it may be personal data). */
  logContent?: boolean;
  /** Decides each call's tenant; absent = everyone is anonymous. */
  authenticator?: Authenticator;
}

/**
 * Every call of every service (KvCache over gRPC, the HTTP front) runs
 * through this one chain, outermost first. The recorders (span, metrics, log)
 * come first so that they see every outcome, refusals included; then the
 * call is tracked and made cancellable, and only then is it let in: its
 * caller authenticated before its body is looked at, its body checked before
 * admission, so a refusal costs the server as little as possible.
 */
export function serverMiddleware(options: ServerMiddlewareOptions): ServerMiddleware {
  const { tracker, admit, semconv, metrics, tenantMetrics, log, logContent, authenticator } = options;
  return composeMiddleware(
    tracing(semconv),
    callMetrics(metrics, tenantMetrics),
    ...(log ? [accessLog(log, logContent ?? false)] : []),
    callTracking(tracker),
    cancellation,
    ...(authenticator ? [authentication(authenticator)] : []),
    wellFormedBody,
    admission(admit),
  );
}
