import type { Server } from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";

export const KV_CACHE_SERVICE = "kvwarden.v1.KvCache";
/** Health service name that reports the process alive, whatever it is doing (liveness probes). */
export const LIVENESS_SERVICE = "liveness";

/** loading: the model is not ready yet; serving; draining: shutting down, finishing running calls. */
export type Phase = "loading" | "serving" | "draining";

/**
 * grpc.health.v1 statuses: `kvwarden.v1.KvCache` and `""` are SERVING only
 * while new work is accepted (readiness, startup); `liveness` is SERVING from
 * the start, so a liveness probe never restarts a sidecar that is loading or draining.
 */
export class Health {
  private readonly implementation = new HealthImplementation({
    "": "NOT_SERVING",
    [KV_CACHE_SERVICE]: "NOT_SERVING",
    [LIVENESS_SERVICE]: "SERVING",
  });
  phase: Phase = "loading";

  set(phase: Phase): void {
    this.phase = phase;
    const status = phase === "serving" ? "SERVING" : "NOT_SERVING";
    this.implementation.setStatus("", status);
    this.implementation.setStatus(KV_CACHE_SERVICE, status);
  }

  addToServer(server: Server): void {
    this.implementation.addToServer(server);
  }
}
