import { EngineError } from "./engine-error.js";

interface Entry {
  /** What the request was (method and sequence): a reused id for something else is an error. */
  fingerprint: string;
  result: Promise<unknown>;
  expiresAt: number;
}

/**
 * Makes mutating calls idempotent under retries: a call carrying a request id
 * that already completed returns the stored result instead of running again
 * (a retried Prefill never appends its tokens twice); one still running is
 * joined. Failed calls are forgotten, so their retries run. Bounded in size
 * and in time.
 */
export class RequestLog {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly capacity: number,
    private readonly ttlMs: number,
  ) {}

  run<T>(scope: string, requestId: string | undefined, fingerprint: string, work: () => Promise<T>): Promise<T> {
    if (!requestId) return work();
    const key = `${scope}\u0000${requestId}`;
    const now = Date.now();
    const known = this.entries.get(key);
    if (known && known.expiresAt > now) {
      if (known.fingerprint !== fingerprint) {
        return Promise.reject(
          new EngineError("INVALID_ARGUMENT", `request_id '${requestId}' was already used for a different request (${known.fingerprint})`),
        );
      }
      return known.result as Promise<T>;
    }
    const result = work();
    this.entries.delete(key);
    this.entries.set(key, { fingerprint, result, expiresAt: now + this.ttlMs });
    result.catch(() => {
      if (this.entries.get(key)?.result === result) this.entries.delete(key);
    });
    // Oldest first in insertion order: drop the oldest beyond capacity.
    while (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value!);
    return result;
  }
}
