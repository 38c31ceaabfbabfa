import { setImmediate as nextTurn } from "node:timers/promises";

/**
 * Long computations written as generators that yield between slices of work
 * (tokenizing, eviction planning) can run in one go (runToEnd) or in slices
 * with the event loop turning in between (runInSlices), so that other calls
 * and health checks are answered while one call's work runs on the same thread.
 */
export function runToEnd<T>(work: Generator<void, T>): T {
  for (;;) {
    const step = work.next();
    if (step.done) return step.value;
  }
}

/**
 * Runs `work` with the event loop turning between slices: after every step, or, with `sliceMs`,
 * once the steps since the last turn have taken that long (short work then runs in one go,
 * paying no turn). Stops with `signal`'s reason once it aborts.
 */
export async function runInSlices<T>(work: Generator<void, T>, signal?: AbortSignal, sliceMs = 0): Promise<T> {
  let sliceStart = performance.now();
  for (;;) {
    signal?.throwIfAborted();
    const step = work.next();
    if (step.done) return step.value;
    if (performance.now() - sliceStart >= sliceMs) {
      await nextTurn();
      sliceStart = performance.now();
    }
  }
}
