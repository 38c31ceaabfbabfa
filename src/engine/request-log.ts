import { EngineError } from "./engine-error.js";
import type { RequestFingerprint } from "./request-digest.js";

/** How long and how many completed request ids each tenant's retries are recognised for. */
export interface RequestLogOptions {
  /** A request id is remembered this long after its call started. */
  ttlMs: number;
  /** Most request ids remembered per tenant; beyond it the oldest is forgotten. */
  perTenant: number;
  /** Milliseconds on a clock that never goes back (tests inject one). */
  now: () => number;
}

export const DEFAULT_REQUEST_ID_TTL_MS = 600_000;
export const DEFAULT_REQUEST_IDS_PER_TENANT = 10_000;

interface Entry {
  fingerprint: RequestFingerprint;
  result: Promise<unknown>;
  expiresAt: number;
}

/**
 * Makes mutating calls idempotent under retries: a call carrying a request id
 * that already completed returns the stored result instead of running again
 * (a retried Prefill never appends its tokens twice); one still running is
 * joined; the same id with a different request is INVALID_ARGUMENT. Failed
 * calls are forgotten, so their retries run. Each tenant has its own bound in
 * size and in time, so one tenant's calls never push out another's ids.
 */
export class RequestLog {
  /** Per tenant, by request id, oldest first (insertion order is expiry order). */
  private readonly tenants = new Map<string, Map<string, Entry>>();
  private readonly options: RequestLogOptions;

  constructor(options: Partial<RequestLogOptions> = {}) {
    this.options = { ttlMs: DEFAULT_REQUEST_ID_TTL_MS, perTenant: DEFAULT_REQUEST_IDS_PER_TENANT, now: () => performance.now(), ...options };
  }

  run<T>(tenant: string, requestId: string | undefined, fingerprint: RequestFingerprint, work: () => Promise<T>): Promise<T> {
    if (!requestId) return work();
    const now = this.options.now();
    const entries = this.tenants.get(tenant) ?? new Map<string, Entry>();
    this.tenants.set(tenant, entries);
    expire(entries, now);
    const known = entries.get(requestId);
    if (known) {
      if (known.fingerprint.digest !== fingerprint.digest) {
        return Promise.reject(
          new EngineError(
            "INVALID_ARGUMENT",
            `request_id '${requestId}' was already used for a different request (${known.fingerprint.description}); use a new id for a new request`,
          ),
        );
      }
      return known.result as Promise<T>;
    }
    const result = work();
    entries.set(requestId, { fingerprint, result, expiresAt: now + this.options.ttlMs });
    result.catch(() => {
      if (entries.get(requestId)?.result === result) entries.delete(requestId);
    });
    while (entries.size > this.options.perTenant) entries.delete(entries.keys().next().value!);
    return result;
  }
}

/** Drops the entries whose time is up: they come first, as each was added with the same TTL. */
function expire(entries: Map<string, Entry>, now: number): void {
  for (const [requestId, entry] of entries) {
    if (entry.expiresAt > now) return;
    entries.delete(requestId);
  }
}
