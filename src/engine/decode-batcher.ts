import { EngineError } from "./engine-error.js";

interface Waiting<T> {
  item: T;
  resolve: () => void;
  reject: (error: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

/**
 * Continuous batching of decode steps. Each Decode stream asks for one step at
 * a time; the steps asked for while a batch runs (or in the same turn of the
 * event loop) run together as the next batch, so streams join and leave
 * between steps. A batch starts as soon as every stream in a decode loop
 * has asked, without waiting for streams that are busy elsewhere (e.g. a slow
 * client): those join the batch after.
 */
export class DecodeBatcher<T> {
  private readonly waiting: Waiting<T>[] = [];
  private running = false;
  private scheduled = false;
  /** Streams inside a decode loop: the most that can ask for the next batch. */
  private participants = 0;

  constructor(
    private readonly runBatch: (batch: T[]) => Promise<void>,
    readonly maxBatchSize: number,
  ) {}

  /** A stream enters its decode loop; `leave` when it ends. */
  join(): void {
    this.participants++;
  }

  leave(): void {
    this.participants--;
    this.startIfReady();
  }

  /** A stream in its decode loop that cannot go on (its consumer is not reading) leaves the batch until `until` settles. */
  async sitOut(until: Promise<void>): Promise<void> {
    this.leave();
    try {
      await until;
    } finally {
      this.join();
    }
  }

  /** No stream is in a decode loop. */
  get idle(): boolean {
    return this.participants === 0;
  }

  /** Runs one step of `item` with whichever others step now; resolves once its step is done. */
  step(item: T, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(new EngineError("CANCELLED", "the call was cancelled"));
    return new Promise<void>((resolve, reject) => {
      const waiting: Waiting<T> = { item, resolve, reject, signal };
      if (signal) {
        // Cancelled before its batch starts: leave the queue at once; a running step completes.
        waiting.onAbort = () => {
          const index = this.waiting.indexOf(waiting);
          if (index < 0) return;
          this.waiting.splice(index, 1);
          reject(new EngineError("CANCELLED", "the call was cancelled"));
        };
        signal.addEventListener("abort", waiting.onAbort, { once: true });
      }
      this.waiting.push(waiting);
      this.startIfReady();
    });
  }

  private startIfReady(): void {
    if (this.running || this.waiting.length === 0) return;
    if (this.waiting.length >= Math.min(this.participants, this.maxBatchSize)) {
      void this.runNext();
    } else if (!this.scheduled) {
      // Streams still busy elsewhere get until the event loop's next turn to ask.
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        if (!this.running && this.waiting.length > 0) void this.runNext();
      });
    }
  }

  private async runNext(): Promise<void> {
    this.running = true;
    const batch = this.waiting.splice(0, this.maxBatchSize);
    for (const waiting of batch) if (waiting.onAbort) waiting.signal!.removeEventListener("abort", waiting.onAbort);
    try {
      await this.runBatch(batch.map((waiting) => waiting.item));
      for (const waiting of batch) waiting.resolve();
    } catch (error) {
      for (const waiting of batch) waiting.reject(error);
    } finally {
      this.running = false;
      this.startIfReady();
    }
  }
}
