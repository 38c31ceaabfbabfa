import { Worker } from "node:worker_threads";
import { ResidentInputs, type Appendable, type ResidentFeed } from "./resident-inputs.js";
import { TransferBuffers } from "./transfer-buffers.js";

/** A tensor as it crosses to a session thread: onnxruntime's type name, its values and its shape. */
export interface ThreadTensor {
  type: "float32" | "float16" | "int64";
  /** Its first product(dims) values are the tensor's (a batch arena's stores hold room for more slots). */
  data: Float32Array | Uint16Array | BigInt64Array;
  dims: readonly number[];
  /** Present when the input only grows by appends between revisions: a large one is kept on its thread (resident-inputs.ts). */
  appendable?: Appendable;
}

/** A tensor as posted: whole, or (kept on the thread) whole once and then as its appended ranges. */
interface PostedTensor {
  type: ThreadTensor["type"];
  data: ThreadTensor["data"];
  dims: readonly number[];
  resident?: ResidentFeed;
}

/** An output as it comes back: values (the session thread's own buffer, transferred) and shape. */
export interface ThreadOutput {
  data: Float32Array | Uint16Array;
  dims: readonly number[];
}

/**
 * Outputs this large or larger come back in buffers the engine gave back (recycle) rather than in
 * fresh ones: at 8,192 cached tokens a step's attention sums are 640 KiB, and collecting a fresh
 * copy per step cost the event loop a full collection every 70-80 ms (docs/worker-threads.md).
 */
export const OUTPUT_REUSE_MIN_BYTES = 64 * 1024;

/**
 * The most a thread keeps of lent output buffers between runs: a long step's outputs many times over
 * (stories260K at 8,192 cached: 1.25 MiB), yet a bound, as buffers of sizes no later output has
 * (a sequence whose cache grew past a power of two) would otherwise pile up; a buffer lent beyond
 * it is dropped.
 */
export const OUTPUT_REUSE_KEPT_MAX_BYTES = 32 * 1024 * 1024;

interface Job {
  id: number;
  feeds: Record<string, PostedTensor>;
  /** Through the graph's stages, letting a run that is not staged go between them (onnx-session-worker.js). */
  staged: boolean;
  /** The thread that holds this run's resident inputs: only it can run it. */
  home?: SessionThread;
  /** Resident copies this run sends or updates. */
  residentIds: number[];
  resolve(outputs: Record<string, ThreadOutput>): void;
  reject(error: Error): void;
}

/** Every reply to a run names it and gives back the buffers of its inputs. */
type Reply = { ready: true } | { run: number; outputs: Record<string, ThreadOutput>; inputs: ArrayBuffer[] } | { run: number; error: string; inputs: ArrayBuffer[] };

/** One worker_thread holding one session (and its stages), the job it runs, and a job it runs between that one's stages. */
interface SessionThread {
  worker: Worker;
  /** Counts the messages posted to the thread, so that it can wait for the next without spinning. */
  posted: Int32Array;
  job: Job | null;
  beside: Job | null;
}

/** How the threads share out their work and memory. */
export interface SessionThreadOptions {
  /** Appendable inputs this large or larger are kept on the threads (default RESIDENT_MIN_BYTES). */
  residentMinBytes?: number;
  /**
   * Between two stages of a staged run, the runs beside it may take up to this many times the
   * thread time of the stage before (default DEFAULT_SHORT_STEP_WEIGHT; docs/worker-threads.md).
   */
  shortStepWeight?: number;
}

/**
 * Short steps beside a long one's stages get three times the thread time the stages get. Over 15
 * rounds of target 8, a short stream kept 0.60x, 0.72x and 0.75x of its speed alone (medians) with
 * weights 1, 2 and 3; only with 3 did every round keep 0.70x (2: down to 0.63x). The long stream
 * then kept a fifth of its own speed (docs/worker-threads.md, "Short steps' weight").
 */
export const DEFAULT_SHORT_STEP_WEIGHT = 3;

/** The graph a session thread runs, whole and, possibly, cut into stages (llama-step-graph.ts). */
export interface ThreadGraphs {
  /** The model bytes, or the path of an .onnx file whose weights lie beside it. */
  whole: Uint8Array | string;
  /** The same model in stages, in order; none: runs are never staged. */
  stages: readonly (Uint8Array | string)[];
}

/**
 * onnxruntime sessions of one graph, each on its own worker_thread
 * (onnx-session-worker.js): onnxruntime-node runs a session synchronously on
 * the calling thread, which on the main thread stops every other call for the
 * length of a step (docs/limits.md). Runs go to an idle thread, or wait for
 * one in call order, so that as many run at once as there are threads.
 * Inputs are copied once when a run is asked for, into buffers that go to the
 * thread and come back with its reply (transfer-buffers.js); outputs come back
 * transferred, large ones in buffers of earlier outputs that were recycled. A
 * thread that dies fails its run with the reason and is started again for the next.
 */
export class SessionThreads {
  private readonly threads: SessionThread[] = [];
  private readonly waiting: Job[] = [];
  /** Input buffers, transferred to a thread with a run and back with its reply. */
  private readonly buffers = new TransferBuffers();
  /** Buffers of large outputs the threads sent, until recycled: only those are lent back. */
  private readonly largeOutputs = new WeakSet<ArrayBuffer>();
  /** Output buffers the engine is done with (recycle), lent to the thread of the next run posted to carry outputs back. */
  private readonly spareOutputs = new Set<ArrayBuffer>();
  /** Large inputs kept on the threads between runs. */
  private readonly residents: ResidentInputs<SessionThread>;
  private closed = false;
  private nextId = 0;

  private constructor(
    private readonly graphs: ThreadGraphs,
    private readonly options: object,
    /** How many runs can proceed at once: the threads started (a lost one is replaced). */
    readonly size: number,
    private readonly sharing: SessionThreadOptions,
  ) {
    this.residents = new ResidentInputs<SessionThread>((thread, ids) => {
      if (!this.closed && this.threads.includes(thread)) thread.worker.postMessage({ drop: ids });
    }, sharing.residentMinBytes);
  }

  /** `count` threads, each with sessions of `graphs` created with `options` (onnxruntime SessionOptions). */
  static async start(graphs: ThreadGraphs, options: object, count: number, sharing: SessionThreadOptions = {}): Promise<SessionThreads> {
    const shortStepWeight = sharing.shortStepWeight ?? DEFAULT_SHORT_STEP_WEIGHT;
    if (!(shortStepWeight >= 1)) throw new Error(`the short steps' weight must be 1 or more, not ${shortStepWeight}`);
    const pool = new SessionThreads(graphs, options, count, { ...sharing, shortStepWeight });
    try {
      await Promise.all(Array.from({ length: count }, () => pool.spawn()));
    } catch (error) {
      await pool.close();
      throw error;
    }
    return pool;
  }

  /** How many stages the threads hold: 0 (runs are never staged), or 2 and more. */
  get stages(): number {
    return this.graphs.stages.length;
  }

  /**
   * One run of the graph on `feeds`; `staged` (with stages held), through the stages, so that a run
   * that is not staged may go between two of them on the same thread rather than wait for it.
   */
  run(feeds: Record<string, ThreadTensor>, staged = false): Promise<Record<string, ThreadOutput>> {
    if (this.closed) return Promise.reject(new Error("the model's session threads were shut down"));
    // Copied now, not when a thread is free: the caller's arrays may change once this returns.
    const kept = Object.values(feeds).flatMap((tensor) => (this.residents.keeps(tensor.data, tensor.appendable) ? [{ store: tensor.data, appendable: tensor.appendable }] : []));
    const home = kept.length > 0 ? (this.residents.homeOf(kept) ?? this.leastLoaded()) : undefined;
    const residentIds: number[] = [];
    const copies: Record<string, PostedTensor> = {};
    for (const [name, tensor] of Object.entries(feeds)) {
      if (home && this.residents.keeps(tensor.data, tensor.appendable)) {
        const sent = this.residents.send(tensor.data, tensor.appendable, home, (values) => viewLike(tensor.data, this.buffers.take(values * tensor.data.BYTES_PER_ELEMENT), values));
        residentIds.push(sent.feed.id);
        copies[name] = { type: tensor.type, data: sent.data ?? this.copyOf(tensor.data), dims: tensor.dims, resident: sent.feed };
        continue;
      }
      copies[name] = { type: tensor.type, data: this.copyOf(tensor.data.subarray(0, tensor.dims.reduce((product, n) => product * n, 1))), dims: tensor.dims };
    }
    return new Promise((resolve, reject) => {
      this.waiting.push({ id: this.nextId++, feeds: copies, staged: staged && this.stages > 0, home, residentIds, resolve, reject });
      this.startNext();
    });
  }

  /**
   * `data` copied into a reused buffer of its own, which goes to the thread and comes back with its reply: posting a
   * view would copy its whole buffer (a slab holds keys, values, mask and more), and fresh memory is dear here.
   */
  private copyOf<T extends ThreadTensor["data"]>(data: T): T {
    const copy = viewLike(data, this.buffers.take(data.byteLength), data.length);
    copy.set(data as never);
    return copy;
  }

  /**
   * Outputs of earlier runs that their reader is done with: the buffers of those of
   * OUTPUT_REUSE_MIN_BYTES or more go to a thread with the next run posted, which copies its large
   * outputs into them rather than into fresh memory. Any other array, and one recycled before, is left alone.
   */
  recycle(outputs: readonly ArrayBufferView[]): void {
    for (const { buffer } of outputs) {
      if (!(buffer instanceof ArrayBuffer) || !this.largeOutputs.delete(buffer)) continue;
      this.spareOutputs.add(buffer);
    }
  }

  /** Ends every thread, each once its run in progress is done; runs in progress or waiting fail at once. */
  async close(): Promise<void> {
    this.closed = true;
    const error = new Error("the model's session threads were shut down");
    for (const job of this.waiting.splice(0)) job.reject(error);
    this.spareOutputs.clear();
    const threads = this.threads.splice(0);
    for (const thread of threads) for (const job of [thread.job, thread.beside]) job?.reject(error);
    this.buffers.clear();
    await Promise.all(threads.map((thread) => stop(thread.worker)));
  }

  /** The thread holding the fewest resident bytes, where a new resident input goes; none while every thread is being replaced. */
  private leastLoaded(): SessionThread | undefined {
    let best: { thread: SessionThread; bytes: number } | undefined;
    for (const thread of this.threads) {
      const bytes = this.residents.bytesOn(thread);
      if (!best || bytes < best.bytes) best = { thread, bytes };
    }
    return best?.thread;
  }

  /**
   * Gives waiting runs, in call order, to idle threads, then a run that is not staged to each thread
   * running a staged one, to go between its stages: a run with resident inputs only to their thread.
   */
  private startNext(): void {
    for (const thread of this.threads) {
      if (thread.job) continue;
      const job = this.take((waiting) => !waiting.home || waiting.home === thread);
      if (job) this.post(thread, (thread.job = job));
    }
    for (const thread of this.threads) {
      if (!thread.job?.staged || thread.beside) continue;
      const job = this.take((waiting) => !waiting.staged && (!waiting.home || waiting.home === thread));
      if (job) this.post(thread, (thread.beside = job));
    }
  }

  /** The first waiting job that `fits`, out of the queue. */
  private take(fits: (job: Job) => boolean): Job | undefined {
    const index = this.waiting.findIndex(fits);
    return index < 0 ? undefined : this.waiting.splice(index, 1)[0];
  }

  private post(thread: SessionThread, job: Job): void {
    const transfer = [...new Set(Object.values(job.feeds).map((tensor) => tensor.data.buffer as ArrayBuffer))];
    const spare = [...this.spareOutputs];
    this.spareOutputs.clear();
    thread.worker.ref();
    thread.worker.postMessage({ run: job.id, feeds: job.feeds, staged: job.staged, spare }, [...transfer, ...spare]);
    Atomics.add(thread.posted, 0, 1);
    Atomics.notify(thread.posted, 0);
  }

  /** Starts a thread and resolves once its session is created. */
  private spawn(): Promise<void> {
    // The compiled file next to this module; under vitest, the plain-JS source next to this one.
    const posted = new Int32Array(new SharedArrayBuffer(4));
    const worker = new Worker(new URL("./onnx-session-worker.js", import.meta.url), {
      workerData: {
        graph: this.graphs.whole,
        stages: this.graphs.stages,
        options: this.options,
        posted,
        outputReuse: { minBytes: OUTPUT_REUSE_MIN_BYTES, keptMaxBytes: OUTPUT_REUSE_KEPT_MAX_BYTES },
        shortStepWeight: this.sharing.shortStepWeight,
      },
    });
    const thread: SessionThread = { worker, posted, job: null, beside: null };
    return new Promise((resolve, reject) => {
      let ready = false;
      worker.on("message", (reply: Reply) => {
        if ("ready" in reply) {
          if (this.closed) {
            // Closed while this thread was starting (another one failed to): it must not linger.
            void stop(worker);
            return reject(new Error("the model's session threads were shut down"));
          }
          ready = true;
          this.threads.push(thread);
          this.idle(thread);
          resolve();
          return;
        }
        if (!ready) {
          reject(new Error(`onnxruntime could not create the session: ${"error" in reply ? reply.error : "no reason given"}`));
          return;
        }
        // After close, the run's caller has had its answer; the thread is ending (kept alive until then).
        if (this.closed) return;
        for (const buffer of reply.inputs) this.buffers.give(buffer);
        let job: Job | null = null;
        if (thread.beside?.id === reply.run) [job, thread.beside] = [thread.beside, null];
        else if (thread.job?.id === reply.run) [job, thread.job, thread.beside] = [thread.job, thread.beside, null];
        if ("outputs" in reply) {
          for (const { data } of Object.values(reply.outputs)) if (data.byteLength >= OUTPUT_REUSE_MIN_BYTES) this.largeOutputs.add(data.buffer as ArrayBuffer);
          job?.resolve(reply.outputs);
        } else {
          // The thread dropped the copies this run sent or updated: they go whole next time.
          this.residents.failed(job?.residentIds ?? []);
          job?.reject(new Error(reply.error));
        }
        this.idle(thread);
      });
      const lost = (error: Error) => {
        if (!ready) return reject(error);
        this.lost(thread, error);
      };
      worker.on("error", lost);
      worker.on("exit", (code) => lost(new Error(`the onnxruntime session thread exited with code ${code}`)));
    });
  }

  /** A thread with a free place takes the next run, or an idle one stops keeping the process alive. */
  private idle(thread: SessionThread): void {
    this.startNext();
    if (!thread.job) thread.worker.unref();
  }

  /** A thread ended on its own (an error it did not catch): its run fails with why, and a new thread takes its place. */
  private lost(thread: SessionThread, error: Error): void {
    const index = this.threads.indexOf(thread);
    if (index < 0) return;
    this.threads.splice(index, 1);
    const jobs = [thread.job, thread.beside];
    thread.job = thread.beside = null;
    const failure = new Error(`the model's session thread failed: ${error.message}`);
    for (const job of jobs) job?.reject(failure);
    // Runs tied to its copies cannot run elsewhere: those copies are gone with it.
    this.residents.lost(thread);
    for (const waiting of this.waiting.filter((other) => other.home === thread)) {
      this.waiting.splice(this.waiting.indexOf(waiting), 1);
      waiting.reject(failure);
    }
    if (this.closed) return;
    this.spawn().catch((spawnError: Error) => {
      // No thread left to run on: what waits would wait for ever.
      if (this.threads.length === 0) for (const waiting of this.waiting.splice(0)) waiting.reject(spawnError);
    });
  }
}

/**
 * Ends a thread once its run in progress is done, by asking it to: terminating a thread while
 * onnxruntime runs in it aborts the whole process.
 */
function stop(worker: Worker): Promise<void> {
  const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
  worker.postMessage({ close: true });
  worker.ref();
  return exited;
}

/** A typed array of `like`'s kind over the start of `buffer`, of `like`'s length or `length`. */
function viewLike<T extends ThreadTensor["data"]>(like: T, buffer: ArrayBuffer, length = like.length): T {
  const Kind = like.constructor as new (buffer: ArrayBuffer, byteOffset: number, length: number) => T;
  return new Kind(buffer, 0, length);
}
