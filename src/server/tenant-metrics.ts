import { status } from "@grpc/grpc-js";
import { Counter, Gauge, type Registry } from "prom-client";

/** What one tenant holds, read at scrape time. */
export interface TenantUsage {
  kvBytes: number;
  sequences: number;
}

/**
 * Per-tenant metrics, labelled by tenant: only authenticated tenants appear
 * (names from the tokens file or verified certificates, so the label set stays
 * as small as the operator made it), each from its first call on.
 */
export class TenantMetrics {
  private readonly tenants = new Set<string>();
  private readonly exhausted: Counter<"tenant">;

  /** `usage` is undefined while the model loads. */
  constructor(registry: Registry, usage: (tenant: string) => TenantUsage | undefined) {
    const registers = [registry];
    const tenants = this.tenants;
    const gauge = (name: string, help: string, read: (u: TenantUsage) => number) =>
      new Gauge({
        name: `kvwarden:${name}`,
        help,
        labelNames: ["tenant"],
        registers,
        collect() {
          for (const tenant of tenants) {
            const current = usage(tenant);
            if (current) this.set({ tenant }, read(current));
          }
        },
      });
    gauge("tenant_kv_cache_used_bytes", "KV cache bytes held by the tenant's sequences", (u) => u.kvBytes);
    gauge("tenant_num_sequences", "Sequences the tenant holds", (u) => u.sequences);
    this.exhausted = new Counter({
      name: "kvwarden:tenant_resource_exhausted_total",
      help: "Calls refused with RESOURCE_EXHAUSTED (global budget or the tenant's quota), by tenant",
      labelNames: ["tenant"],
      registers,
    });
  }

  callEnded(tenant: string, code: status): void {
    if (tenant === "") return;
    this.tenants.add(tenant);
    if (code === status.RESOURCE_EXHAUSTED) this.exhausted.inc({ tenant });
  }
}
