import { status } from "@grpc/grpc-js";
import { GEN_AI } from "../../telemetry/attributes.js";
import type { KvwardenMetrics } from "../../telemetry/metrics.js";
import type { TenantMetrics } from "../tenant-metrics.js";
import { observeOutcome } from "./call-outcome.js";
import type { ServerCall, ServerMiddleware } from "./server-call.js";

/** Counts calls (running and by method and code), the tokens they read and wrote, and, with tenants, each tenant's refusals. */
export function callMetrics(metrics: KvwardenMetrics | undefined, tenantMetrics: TenantMetrics | undefined): ServerMiddleware {
  return <T>(call: ServerCall, next: () => Promise<T>): Promise<T> => {
    const work = call.admission === "work";
    metrics?.callStarted(work);
    return observeOutcome(call, next, ({ code }) => {
      metrics?.callEnded(call.method, status[code], work);
      tenantMetrics?.callEnded(call.scope.caller.tenant, code);
      metrics?.tokens(tokensOf(call, GEN_AI.usageInputTokens), tokensOf(call, GEN_AI.usageOutputTokens));
    });
  };
}

/** A token count the handler annotated; 0 when it did not. */
export function tokensOf(call: ServerCall, attribute: string): number {
  return Number(call.attributes[attribute] ?? 0);
}
