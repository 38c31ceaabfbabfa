import { Unavailable } from "./status.js";

/**
 * The calls in progress, so that shutdown can wait for them and then cancel
 * what is left: each call's AbortController is aborted with an Unavailable
 * reason, which the call reports to its client as UNAVAILABLE.
 */
export class CallTracker {
  private readonly calls = new Set<AbortController>();
  private readonly idleWaiters = new Set<() => void>();

  /** Registers a running call; the returned function unregisters it. */
  add(controller: AbortController): () => void {
    this.calls.add(controller);
    return () => {
      this.calls.delete(controller);
      if (this.calls.size === 0) for (const wake of this.idleWaiters) wake();
    };
  }

  get size(): number {
    return this.calls.size;
  }

  /** Resolves true once no call runs, or false after `timeoutMs`. */
  idle(timeoutMs: number): Promise<boolean> {
    if (this.calls.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (idle: boolean) => {
        clearTimeout(timer);
        this.idleWaiters.delete(wake);
        resolve(idle);
      };
      const wake = () => done(true);
      const timer = setTimeout(() => done(false), Math.max(0, timeoutMs));
      this.idleWaiters.add(wake);
    });
  }

  cancelAll(): void {
    for (const controller of this.calls) controller.abort(new Unavailable("the server is shutting down"));
  }
}
