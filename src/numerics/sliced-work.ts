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
const SLICE_MS = 5;

/** The slice of sliced work in this turn of the event loop, shared by every caller; null until one runs. */
let slice: { startedAt: number } | null = null;
/** Works waiting for their next step, in the order they will take it. */
const waiting: (() => void)[] = [];
/** Whether a turn of the event loop has been asked for the first of `waiting`. */
let turnAsked = false;

/** How long this turn's slice has run (ms); the first work to step in a turn opens it. */
function sliceElapsed(): number {
  if (slice === null) {
    slice = { startedAt: performance.now() };
    setImmediate(() => (slice = null));
  }
  return performance.now() - slice.startedAt;
}

/** Resolves when the work may take its next step: after every work already waiting. */
function nextStep(): Promise<void> {
  return new Promise((resolve) => {
    waiting.push(resolve);
    handOn();
  });
}

/** The first waiting work steps now while this turn's slice has time left, otherwise in the next turn. */
function handOn(): void {
  if (waiting.length === 0) return;
  if (sliceElapsed() < SLICE_MS) {
    waiting.shift()!();
    return;
  }
  if (turnAsked) return;
  turnAsked = true;
  setImmediate(() => {
    turnAsked = false;
    slice = null;
    sliceElapsed(); // a new turn's slice: its first step runs, however long it is
    waiting.shift()?.();
  });
}

/**
 * Runs `work` with the event loop turning between slices. Every work running at once shares one
 * slice of SLICE_MS per turn: a work steps at once while the slice has time and no other work waits;
 * otherwise it waits behind the others, which step in turn, one after another while the slice has
 * time and at least one in each later turn. Many calls' work together thus holds the loop about as
 * long as one's, and none waits for ever. Stops with `signal`'s reason once it aborts.
 */
export async function runInSlices<T>(work: Generator<void, T>, signal?: AbortSignal): Promise<T> {
  try {
    for (;;) {
      if (sliceElapsed() >= SLICE_MS || waiting.length > 0) await nextStep(); // opens this turn's slice if none is open
      signal?.throwIfAborted();
      const step = work.next();
      if (step.done) return step.value;
    }
  } finally {
    handOn(); // this work's turn ends here
  }
}
