/** The queue already holds its limit of waiting calls. */
export class AdmissionQueueFull extends Error {
  constructor(readonly limit: number) {
    super(`the admission queue is full (${limit} calls already wait for KV memory, --max-queue)`);
  }
}

/** A waiting call gave up: its signal aborted with `reason` (the client cancelled, or its deadline passed). */
export class AdmissionAbandoned extends Error {
  constructor(readonly reason: unknown) {
    super("the call gave up waiting for KV memory");
  }
}

interface Waiter {
  /** Takes the room and settles the call; false when there is still no room. */
  attempt(): boolean;
  /** Stops listening to the call's signal. */
  detach(): void;
}

/**
 * Calls that could not be admitted now wait here for KV memory (docs/gateway.md), up to `limit`
 * of them, instead of being refused at once (limit 0 refuses at once). They are admitted as
 * memory frees, in turns across tenants (each tenant's calls in arrival order, one tenant after
 * another), and the call whose turn it is holds back the ones after it: a large call is never
 * starved by small ones, as in vLLM's first-come-first-served scheduler. A call whose signal
 * aborts leaves the queue at once, and leaves nothing behind.
 */
export class AdmissionQueue {
  /** Each tenant's waiting calls in arrival order; the map's order is the order of turns. */
  private readonly turns = new Map<string, Waiter[]>();
  private waiting = 0;
  private retryScheduled = false;

  constructor(readonly limit: number) {}

  /** Calls waiting now. */
  get length(): number {
    return this.waiting;
  }

  /**
   * Waits until `attempt` gives a value other than null (it is tried whenever memory frees and
   * must take what it needs synchronously). Rejects with AdmissionQueueFull when `limit` calls
   * already wait, with AdmissionAbandoned when `signal` aborts, and with what `attempt` throws.
   */
  wait<T>(tenant: string, attempt: () => T | null, signal?: AbortSignal): Promise<T> {
    if (this.waiting >= this.limit) return Promise.reject(new AdmissionQueueFull(this.limit));
    if (signal?.aborted) return Promise.reject(new AdmissionAbandoned(signal.reason));
    return new Promise<T>((resolve, reject) => {
      const waiter: Waiter = {
        attempt: () => {
          let value: T | null;
          try {
            value = attempt();
          } catch (error) {
            waiter.detach();
            reject(error);
            return true;
          }
          if (value === null) return false;
          waiter.detach();
          resolve(value);
          return true;
        },
        detach: () => signal?.removeEventListener("abort", onAbort),
      };
      const onAbort = () => {
        this.remove(tenant, waiter);
        reject(new AdmissionAbandoned(signal!.reason));
        this.retrySoon(); // the calls it held back may fit
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      const queue = this.turns.get(tenant);
      if (queue) queue.push(waiter);
      else this.turns.set(tenant, [waiter]);
      this.waiting++;
    });
  }

  /** Tries the waiting calls soon (once, however often memory frees in the same turn of the event loop). */
  retrySoon(): void {
    if (this.retryScheduled || this.waiting === 0) return;
    this.retryScheduled = true;
    queueMicrotask(() => {
      this.retryScheduled = false;
      this.retry();
    });
  }

  /** Admits waiting calls, turn by turn, until the call whose turn it is does not fit. */
  retry(): void {
    for (;;) {
      const next = this.turns.entries().next();
      if (next.done) return;
      const [tenant, queue] = next.value;
      if (!queue[0].attempt()) return;
      // Served: the tenant's next call waits for the other tenants' turns.
      this.remove(tenant, queue[0]);
      if (queue.length > 0) {
        this.turns.delete(tenant);
        this.turns.set(tenant, queue);
      }
    }
  }

  private remove(tenant: string, waiter: Waiter): void {
    const queue = this.turns.get(tenant);
    const at = queue?.indexOf(waiter) ?? -1;
    if (!queue || at < 0) return;
    queue.splice(at, 1);
    this.waiting--;
    if (queue.length === 0) this.turns.delete(tenant);
  }
}
