import { setImmediate as nextTurn } from "node:timers/promises";

/**
 * Long computations written as generators that yield between slices of work
 * (tokenizing, eviction planning, a batch arena's layout) can run in one go
 * (runToEnd) or in slices with the event loop turning in between
 * (runInSlices), so that other calls and health checks are answered while
 * one call's work runs on the same thread.
 */
export function runToEnd<T>(work: Generator<void, T>): T {
  for (;;) {
    const step = work.next();
    if (step.done) return step.value;
  }
}

/**
 * How long the engine's sliced work runs between event-loop turns, all of it together: long work
 * goes in slices of about this, short work in one go, paying no turn.
 */
export const SLICE_MS = 5;

/** The slice of sliced work in this turn of the event loop, shared by every caller; null until one runs. */
let slice: { startedAt: number } | null = null;

/** This turn's slice, opened when none is (the next turn opens another). */
function currentSlice(): { startedAt: number } {
  if (slice === null) {
    slice = { startedAt: performance.now() };
    setImmediate(() => (slice = null));
  }
  return slice;
}

/**
 * Runs `work` with the event loop turning between slices. Every work running at once shares one slice
 * of `sliceMs` per turn (0: a step each), so that many calls' work together holds the loop no longer
 * than one's; each still takes a step per turn. Stops with `signal`'s reason once it aborts.
 */
export async function runInSlices<T>(work: Generator<void, T>, signal?: AbortSignal, sliceMs = 0): Promise<T> {
  for (;;) {
    const { startedAt } = currentSlice();
    signal?.throwIfAborted();
    const step = work.next();
    if (step.done) return step.value;
    if (performance.now() - startedAt >= sliceMs) await nextTurn();
  }
}
