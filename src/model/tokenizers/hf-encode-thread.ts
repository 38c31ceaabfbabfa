import { Worker } from "node:worker_threads";

interface Job {
  text: string;
  resolve(ids: number[]): void;
  reject(error: unknown): void;
}

type Reply = Int32Array | { error: string };

/**
 * A worker_thread (hf-encode-worker.js) that encodes texts with a checkpoint
 * folder's tokenizer.json, so that a long text does not hold the event loop:
 * @huggingface/tokenizers encodes in one call that cannot pause. Started on
 * first use; texts are encoded one at a time, in call order.
 */
export class HfEncodeThread {
  private worker: Worker | null = null;
  private running: Job | null = null;
  private readonly waiting: Job[] = [];

  constructor(private readonly dir: string) {}

  /** `text`'s ids without special tokens; rejects with `signal`'s reason once it aborts. */
  encode(text: string, signal?: AbortSignal): Promise<number[]> {
    signal?.throwIfAborted();
    return new Promise((resolve, reject) => {
      const onAbort = () => this.cancel(job, signal!.reason);
      const job: Job = {
        text,
        resolve: (ids) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(ids);
        },
        reject: (error) => {
          signal?.removeEventListener("abort", onAbort);
          reject(error);
        },
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiting.push(job);
      this.startNext();
    });
  }

  /** Stops the thread and fails every text not yet encoded; a later `encode` starts a new thread. */
  close(): void {
    const jobs = [...(this.running ? [this.running] : []), ...this.waiting.splice(0)];
    this.stopWorker();
    for (const job of jobs) job.reject(new Error("the tokenizer was closed"));
  }

  private cancel(job: Job, reason: unknown): void {
    // The library's encode cannot be interrupted: a cancelled text being encoded costs the thread.
    if (job === this.running) this.stopWorker();
    else this.waiting.splice(this.waiting.indexOf(job), 1);
    job.reject(reason);
    this.startNext();
  }

  private startNext(): void {
    if (this.running) return;
    const job = this.waiting.shift();
    if (!job) {
      // An idle thread does not keep the process alive.
      this.worker?.unref();
      return;
    }
    this.running = job;
    const worker = (this.worker ??= this.spawn());
    worker.ref();
    worker.postMessage(job.text);
  }

  private spawn(): Worker {
    // The compiled file next to this module; under vitest, the plain-JS source next to this one
    // (tsconfig's allowJs copies it into dist/; tsconfig.json stays plain JSON, which tests parse).
    const worker = new Worker(new URL("./hf-encode-worker.js", import.meta.url), { workerData: { dir: this.dir } });
    worker.on("message", (reply: Reply) => {
      if (worker !== this.worker || !this.running) return;
      const job = this.running;
      this.running = null;
      if (reply instanceof Int32Array) job.resolve(Array.from(reply));
      else job.reject(new Error(`tokenizer: ${reply.error}`));
      this.startNext();
    });
    worker.on("error", (error) => this.lost(worker, error));
    worker.on("exit", (code) => this.lost(worker, new Error(`the tokenizer thread exited with code ${code}`)));
    return worker;
  }

  /** The thread died on its own (a tokenizer.json it cannot read, say): its text fails, the next starts a new one. */
  private lost(worker: Worker, error: Error): void {
    if (worker !== this.worker) return;
    const job = this.running;
    this.stopWorker();
    job?.reject(error);
    this.startNext();
  }

  private stopWorker(): void {
    const worker = this.worker;
    this.worker = null;
    this.running = null;
    void worker?.terminate();
  }
}
