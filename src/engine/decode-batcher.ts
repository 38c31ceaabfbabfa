import { EngineError } from "./engine-error.js";
import { FairShare } from "./fair-share.js";
import { lanesOf } from "./length-lanes.js";

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
 * client): those join the batch after. Streams of very different cache
 * lengths step in separate runs (length-lanes.ts), which take turns by cost
 * (fair-share.ts), or run at the same time when the runner has the threads.
 */
export class DecodeBatcher<T extends object> {
  private readonly waiting: Waiting<T>[] = [];
  private readonly share = new FairShare<T>();
  /** Streams whose step runs now. */
  private readonly stepping = new Set<T>();
  private runs = 0;
  /** Of those, runs in stages, and runs started between a staged run's stages (one per staged run). */
  private stagedRuns = 0;
  private besideRuns = 0;
  private scheduled = false;
  /** Streams inside a decode loop: the most that can ask for the next batch. */
  private participants = 0;

  /**
   * `runBatch` gets the lane a batch belongs to of the lanes that were waiting or stepping (lane 0
   * the shortest), so that it can keep one working copy per lane; `entriesOf` is a stream's longest
   * cached head. Up to `parallelism` batches run at once, each of another lane (the runner's
   * session threads: a short lane steps beside a long one instead of after it). `attendedOf` is
   * what a stream's step attends, which its runs are charged: its cache's slots, the room grown
   * ahead included (a step runs over them all, masked or not). A run whose members attend slots that
   * `inStages` accepts goes in stages while other streams decode (alone, it would only pay for the
   * stages), and one more run not in stages may start beside it, to run between its stages on its
   * thread (docs/worker-threads.md).
   */
  constructor(
    private readonly runBatch: (batch: T[], lane: number, lanes: number, inStages: boolean) => Promise<void>,
    readonly maxBatchSize: number,
    private readonly entriesOf: (item: T) => number,
    private readonly parallelism = 1,
    private readonly attendedOf = entriesOf,
    private readonly inStages: (slots: number) => boolean = () => false,
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

  /** Whether another run may start: a thread is free, or a staged run has room beside it. */
  private get roomForRun(): boolean {
    return this.runs < this.parallelism || this.besideRuns < this.stagedRuns;
  }

  private startIfReady(): void {
    if (!this.roomForRun || this.waiting.length === 0) return;
    if (this.waiting.length >= Math.min(this.participants - this.stepping.size, this.maxBatchSize)) {
      this.startAll();
    } else if (!this.scheduled) {
      // Streams still busy elsewhere get until the event loop's next turn to ask.
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        this.startAll();
      });
    }
  }

  /** Starts batches while a run is free and a lane with waiting steps is not stepping. */
  private startAll(): void {
    while (this.roomForRun && this.startNext());
  }

  private startNext(): boolean {
    type Member = { item: T; waiting?: Waiting<T> };
    const members: Member[] = [...this.waiting.map((waiting) => ({ item: waiting.item, waiting })), ...[...this.stepping].map((item) => ({ item }))];
    const lanes = lanesOf(members, (member) => this.entriesOf(member.item));
    // A lane steps one batch at a time: its waiting members join its next.
    const ready = lanes.map((lane, index) => ({ index, waiting: lane.every((member) => member.waiting) ? lane.map((member) => member.waiting!) : [] }));
    const candidates = ready.filter((lane) => lane.waiting.length > 0);
    if (candidates.length === 0) return false;
    const picked = candidates[this.share.pick(candidates.map((lane) => lane.waiting.map((waiting) => waiting.item)))];
    const batch = picked.waiting.sort((a, b) => this.share.charge(a.item) - this.share.charge(b.item)).slice(0, this.maxBatchSize);
    // Beside running batches, a lane starts only while no shorter stream stepping is owed more (runs
    // are charged as they start): a short lane never waits for a long lane's step, and a long lane
    // takes no more than its share (by cost) of a second core that a busy machine may not have.
    const least = this.share.charge(batch[0].item);
    const longest = Math.max(...batch.map((waiting) => this.entriesOf(waiting.item)));
    if ([...this.stepping].some((item) => this.share.charge(item) < least && this.entriesOf(item) < longest)) return false;
    // With every thread taken, only a run not in stages can start, beside a staged one.
    const staged = this.participants > batch.length && this.inStages(Math.max(...batch.map((waiting) => this.attendedOf(waiting.item))));
    const beside = this.runs >= this.parallelism;
    if (beside && staged) return false;
    for (const waiting of batch) {
      this.waiting.splice(this.waiting.indexOf(waiting), 1);
      if (waiting.onAbort) waiting.signal!.removeEventListener("abort", waiting.onAbort);
    }
    void this.run(batch, picked.index, lanes.length, staged, beside);
    return true;
  }

  private async run(batch: Waiting<T>[], lane: number, lanes: number, staged: boolean, beside: boolean): Promise<void> {
    const items = batch.map((waiting) => waiting.item);
    const attended = Math.max(...items.map(this.attendedOf));
    this.share.ran(items, attended, [...this.waiting.map((waiting) => waiting.item), ...this.stepping]);
    this.runs++;
    if (staged) this.stagedRuns++;
    if (beside) this.besideRuns++;
    for (const item of items) this.stepping.add(item);
    try {
      await this.runBatch(items, lane, lanes, staged);
      for (const item of items) this.stepping.delete(item);
      for (const waiting of batch) waiting.resolve();
    } catch (error) {
      for (const waiting of batch) waiting.reject(error);
    } finally {
      for (const item of items) this.stepping.delete(item);
      this.runs--;
      if (staged) this.stagedRuns--;
      if (beside) this.besideRuns--;
      this.startIfReady();
    }
  }
}
