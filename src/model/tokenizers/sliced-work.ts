import { setImmediate as nextTurn } from "node:timers/promises";

/**
 * Long computations written as generators that yield between slices of work
 * can run in one go (runToEnd) or in slices with the event loop turning in
 * between (runInSlices), so that other calls and health checks are answered
 * while one call's work runs on the same thread.
 */
export function runToEnd<T>(work: Generator<void, T>): T {
  for (;;) {
    const step = work.next();
    if (step.done) return step.value;
  }
}

/** Runs `work` a slice per event-loop turn; stops with `signal`'s reason once it aborts. */
export async function runInSlices<T>(work: Generator<void, T>, signal?: AbortSignal): Promise<T> {
  for (;;) {
    signal?.throwIfAborted();
    const step = work.next();
    if (step.done) return step.value;
    await nextTurn();
  }
}
