import { Counter, Histogram, type Registry } from "prom-client";
import type { StoreListener, StoreOperation, StoreTransfer } from "./store-telemetry.js";

const PREFIX = "kvwarden:";
const TRANSFER_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * The KV store tier's metrics (docs/kv-store.md, "Observability"), on the registry of the process's
 * other metrics: offloads by reason, restores, the bytes and seconds each took, and store errors by
 * gRPC status (RESOURCE_EXHAUSTED: the store was full and the sequence stayed resident).
 */
export class StoreMetrics implements StoreListener {
  private readonly offloads: Counter<"reason">;
  private readonly restores: Counter;
  private readonly bytes: Counter<"operation">;
  private readonly seconds: Histogram<"operation">;
  private readonly errors: Counter<"operation" | "code">;

  constructor(registry: Registry) {
    const registers = [registry];
    this.offloads = new Counter({ name: PREFIX + "kv_offloads_total", help: "Sequences written to the KV store and freed, by reason", labelNames: ["reason"], registers });
    this.restores = new Counter({ name: PREFIX + "kv_restores_total", help: "Sequences restored from the KV store", registers });
    this.bytes = new Counter({ name: PREFIX + "kv_store_bytes_total", help: "Snapshot bytes written (offload) or read (restore)", labelNames: ["operation"], registers });
    this.seconds = new Histogram({ name: PREFIX + "kv_store_seconds", help: "Time of one offload or restore", labelNames: ["operation"], buckets: TRANSFER_BUCKETS, registers });
    this.errors = new Counter({
      name: PREFIX + "kv_store_errors_total",
      help: "Offloads and restores that failed, by gRPC status (RESOURCE_EXHAUSTED: the store is full, the sequence stayed resident)",
      labelNames: ["operation", "code"],
      registers,
    });
  }

  transfer({ operation, reason, bytes, seconds }: StoreTransfer): void {
    if (operation === "offload") this.offloads.inc({ reason });
    else this.restores.inc();
    this.bytes.inc({ operation }, bytes);
    this.seconds.observe({ operation }, seconds);
  }

  storeError(operation: StoreOperation, code: string): void {
    this.errors.inc({ operation, code });
  }
}
