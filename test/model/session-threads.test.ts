import { once } from "node:events";
import { Worker } from "node:worker_threads";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { buildStepGraphInMemory } from "../../src/model/graph/llama-step-graph.js";
import { SeededRandom } from "../../src/numerics/seeded-random.js";
import { STEP_IO } from "../../src/model/graph/step-io.js";
import { OUTPUT_REUSE_MIN_BYTES, SessionThreads, type ThreadTensor } from "../../src/model/runners/session-threads.js";
import type { ModelConfig } from "../../src/model/config/model-config.js";
import { loadTestWeights } from "../support/test-model.js";

const SESSION_OPTIONS = { executionProviders: ["cpu"], intraOpNumThreads: 1, graphOptimizationLevel: "all", logSeverityLevel: 3 };

/** The feeds of a first decode step (empty cache) of `token` at position 0. */
function firstStep(config: ModelConfig, token: number): Record<string, ThreadTensor> {
  const { layers, kvHeads, headSize } = config;
  const feeds: Record<string, ThreadTensor> = {
    [STEP_IO.inputIds]: { type: "int64", data: BigInt64Array.of(BigInt(token)), dims: [1, 1] },
    [STEP_IO.positionIds]: { type: "int64", data: BigInt64Array.of(0n), dims: [1, 1] },
    [STEP_IO.causalMask]: { type: "float32", data: new Float32Array(1), dims: [1, 1] },
    [STEP_IO.queryRows]: { type: "int64", data: BigInt64Array.of(1n), dims: [1] },
    [STEP_IO.logitRows]: { type: "int64", data: BigInt64Array.of(1n), dims: [1] },
  };
  for (let l = 0; l < layers; l++) {
    feeds[STEP_IO.pastKey(l)] = { type: "float32", data: new Float32Array(0), dims: [1, kvHeads, 1, 0, headSize] };
    feeds[STEP_IO.pastValue(l)] = { type: "float32", data: new Float32Array(0), dims: [1, kvHeads, 1, 0, headSize] };
    feeds[STEP_IO.pastMask(l)] = { type: "float32", data: new Float32Array(0), dims: [1, kvHeads, 1, 1, 0] };
  }
  return feeds;
}

/** The feeds of a decode step of `token` over a cache of `slots` made-up entries (the last `masked` hidden). */
function stepOverCache(config: ModelConfig, token: number, slots: number, masked: number): Record<string, ThreadTensor> {
  const { layers, kvHeads, headSize } = config;
  const generator = new SeededRandom(slots);
  const random = () => generator.next();
  const feeds = firstStep(config, token);
  feeds[STEP_IO.positionIds] = { type: "int64", data: BigInt64Array.of(BigInt(slots - masked)), dims: [1, 1] };
  for (let l = 0; l < layers; l++) {
    const values = () => Float32Array.from({ length: kvHeads * slots * headSize }, () => random() - 0.5);
    feeds[STEP_IO.pastKey(l)] = { type: "float32", data: values(), dims: [1, kvHeads, 1, slots, headSize] };
    feeds[STEP_IO.pastValue(l)] = { type: "float32", data: values(), dims: [1, kvHeads, 1, slots, headSize] };
    const mask = Float32Array.from({ length: kvHeads * slots }, (_, i) => (i % slots < slots - masked ? 0 : -Infinity));
    feeds[STEP_IO.pastMask(l)] = { type: "float32", data: mask, dims: [1, kvHeads, 1, 1, slots] };
  }
  return feeds;
}

/** The threads' workers, reached past the class's privacy: to end one as an uncaught error would, and to see them gone. */
const workersOf = (threads: SessionThreads) => (Reflect.get(threads, "threads") as { worker: Worker }[]).map((thread) => thread.worker);

/**
 * Sessions on worker_threads (docs/worker-threads.md): a failure on a thread
 * surfaces as a clear error, never a hang, and the threads go on serving;
 * closing ends them.
 */
describe("SessionThreads", () => {
  const weights = loadTestWeights();
  const graph = buildStepGraphInMemory(weights, { kvDtype: "float32", deviceCache: false });
  let threads: SessionThreads;
  let expected: Float32Array;

  beforeAll(async () => {
    threads = await SessionThreads.start({ whole: graph, stages: [] }, SESSION_OPTIONS, 2);
    expected = (await threads.run(firstStep(weights.config, 1)))[STEP_IO.logits].data as Float32Array;
  });
  afterAll(() => threads.close());

  it("runs as many steps at once as it has threads, each computing what it computes alone", async () => {
    const outputs = await Promise.all(Array.from({ length: 5 }, () => threads.run(firstStep(weights.config, 1))));
    for (const output of outputs) expect(output[STEP_IO.logits].data).toEqual(expected);
  });

  it("fails a run that onnxruntime refuses with onnxruntime's reason, and serves the next", async () => {
    const bad = firstStep(weights.config, 1);
    bad[STEP_IO.inputIds] = { type: "int64", data: BigInt64Array.of(1n), dims: [1, 1, 1] };
    await expect(threads.run(bad)).rejects.toThrow(/input_ids|size|shape/i);
    expect((await threads.run(firstStep(weights.config, 1)))[STEP_IO.logits].data).toEqual(expected);
  });

  it("starts a thread in place of one that ends on its own, and goes on serving", async () => {
    const [worker] = workersOf(threads);
    await worker.terminate();
    // Meanwhile runs go to the thread left; the pool is back to two once the new one's session is created.
    expect((await threads.run(firstStep(weights.config, 1)))[STEP_IO.logits].data).toEqual(expected);
    await vi.waitFor(() => expect(workersOf(threads)).toHaveLength(2), { timeout: 60_000 });
    expect(workersOf(threads)).not.toContain(worker);
    const after = await Promise.all([threads.run(firstStep(weights.config, 1)), threads.run(firstStep(weights.config, 1))]);
    for (const output of after) expect(output[STEP_IO.logits].data).toEqual(expected);
  });

  it("refuses a short steps' weight below 1, naming it", async () => {
    await expect(SessionThreads.start({ whole: graph, stages: [] }, SESSION_OPTIONS, 1, { shortStepWeight: 0.5 })).rejects.toThrow("the short steps' weight must be 1 or more, not 0.5");
  });

  it("refuses a graph onnxruntime cannot load, with its reason", async () => {
    await expect(SessionThreads.start({ whole: new Uint8Array([1, 2, 3]), stages: [] }, SESSION_OPTIONS, 2)).rejects.toThrow(/^onnxruntime could not create the session: /);
  });

  it("fails runs waiting or running when closed, and every later one; its threads end", async () => {
    const pool = await SessionThreads.start({ whole: graph, stages: [] }, SESSION_OPTIONS, 1);
    const runs = Promise.allSettled([pool.run(firstStep(weights.config, 1)), pool.run(firstStep(weights.config, 1))]);
    await pool.close();
    for (const outcome of await runs) expect(outcome).toMatchObject({ status: "rejected", reason: { message: "the model's session threads were shut down" } });
    await expect(pool.run(firstStep(weights.config, 1))).rejects.toThrow("the model's session threads were shut down");
    expect(workersOf(pool)).toHaveLength(0);
  });

  it("after a failed run that updated inputs kept on a thread, sends them whole again and computes the same", async () => {
    const pool = await SessionThreads.start({ whole: graph, stages: [] }, SESSION_OPTIONS, 2, { residentMinBytes: 0 });
    try {
      const { kvHeads, headSize } = weights.config;
      // Every past input kept on its thread (threshold 0): the empty cache's stores, appended to by nothing.
      const feeds = firstStep(weights.config, 1);
      for (const [name, feed] of Object.entries(feeds)) {
        if (!feed.dims.includes(kvHeads) || feed.type !== "float32") continue;
        feed.appendable = { revision: 0, lengths: new Int32Array(kvHeads), rowSlots: 0, width: name.includes("mask") ? 1 : headSize };
      }
      expect((await pool.run(feeds))[STEP_IO.logits].data).toEqual(expected);
      const bad = { ...feeds, [STEP_IO.inputIds]: { type: "int64" as const, data: BigInt64Array.of(1n), dims: [1, 1, 1] } };
      await expect(pool.run(bad)).rejects.toThrow(/input_ids|size|shape/i);
      // The thread dropped its copies with the failure: were they sent as updates, it would answer "not held".
      expect((await pool.run(feeds))[STEP_IO.logits].data).toEqual(expected);
    } finally {
      await pool.close();
    }
  });

  it("carries large outputs back in buffers of recycled ones, with the same values, and leaves other arrays alone", async () => {
    const pool = await SessionThreads.start({ whole: graph, stages: [] }, SESSION_OPTIONS, 1);
    try {
      const step = () => stepOverCache(weights.config, 5, 20_000, 10);
      const first = await pool.run(step());
      const values = Object.fromEntries(Object.entries(first).map(([name, output]) => [name, output.data.slice()]));
      const sums = first[STEP_IO.attentionColsum(0)].data;
      expect(sums.byteLength).toBeGreaterThanOrEqual(OUTPUT_REUSE_MIN_BYTES);
      // In a buffer of a size a slightly larger output fits too: a power of two.
      expect(Math.log2(sums.buffer.byteLength) % 1).toBe(0);
      const own = new Float32Array(OUTPUT_REUSE_MIN_BYTES);
      pool.recycle([...Object.values(first).map((output) => output.data), own]);
      for (let round = 0; round < 2; round++) {
        const again = await pool.run(step());
        // Lent to the thread with that run: gone from here.
        expect(sums.buffer.byteLength).toBe(0);
        for (const [name, output] of Object.entries(again)) expect(output.data, name).toEqual(values[name]);
        pool.recycle(Object.values(again).map((output) => output.data));
      }
      expect(own.length).toBe(OUTPUT_REUSE_MIN_BYTES);
    } finally {
      await pool.close();
    }
  });

  describe("with the graph in stages", () => {
    const { layers } = weights.config;
    const stages = [0, 2, 3, layers].slice(1).map((to, i, ends) => buildStepGraphInMemory(weights, { kvDtype: "float32", stage: { from: i === 0 ? 0 : ends[i - 1], to } }));
    let pool: SessionThreads;
    beforeAll(async () => {
      pool = await SessionThreads.start({ whole: graph, stages }, SESSION_OPTIONS, 1);
    });
    afterAll(() => pool.close());

    it("computes through the stages exactly what the whole graph computes, every output", async () => {
      const whole = await pool.run(stepOverCache(weights.config, 7, 3000, 40));
      const staged = await pool.run(stepOverCache(weights.config, 7, 3000, 40), true);
      expect(Object.keys(staged).sort()).toEqual(Object.keys(whole).sort());
      for (const [name, output] of Object.entries(whole)) {
        expect(staged[name].dims, name).toEqual(output.dims);
        expect(staged[name].data, name).toEqual(output.data);
      }
    });

    it("runs a step that is not staged between a staged step's stages, each computing what it computes alone", async () => {
      const long = () => stepOverCache(weights.config, 3, 20_000, 100);
      const short = () => firstStep(weights.config, 1);
      const longAlone = await pool.run(long(), true);
      const finished: string[] = [];
      const [longBeside, shortBeside] = await Promise.all([
        pool.run(long(), true).then((outputs) => (finished.push("long"), outputs)),
        pool.run(short()).then((outputs) => (finished.push("short"), outputs)),
      ]);
      // Both were posted at once: the short one's message reaches the thread while the first stage runs.
      expect(finished).toEqual(["short", "long"]);
      expect(shortBeside[STEP_IO.logits].data).toEqual(expected);
      for (const [name, output] of Object.entries(longAlone)) expect(longBeside[name].data, name).toEqual(output.data);
    });

    it("runs a second staged step after the first, not inside it", async () => {
      const finished: number[] = [];
      await Promise.all([0, 1, 2].map((index) => pool.run(stepOverCache(weights.config, 3, 5000, 10), true).then(() => finished.push(index))));
      expect(finished).toEqual([0, 1, 2]);
    });
  });
  describe("a session thread's share between two stages (onnx-session-worker.js, posted to directly)", () => {
    const { layers } = weights.config;
    const twoStages = [0, 3, layers].slice(1).map((to, i, ends) => buildStepGraphInMemory(weights, { kvDtype: "float32", stage: { from: i === 0 ? 0 : ends[i - 1], to } }));
    const posted = (feeds: Record<string, ThreadTensor>) => Object.fromEntries(Object.entries(feeds).map(([name, { type, data, dims }]) => [name, { type, data, dims }]));

    /** The order of the replies to a staged step over a long context and `shorts` short steps, all posted at once. */
    async function replyOrder(shortStepWeight: number, shorts: number): Promise<string[]> {
      const worker = new Worker(new URL("../../src/model/runners/onnx-session-worker.js", import.meta.url), {
        workerData: { graph, stages: twoStages, options: SESSION_OPTIONS, posted: new Int32Array(new SharedArrayBuffer(4)), outputReuse: { minBytes: OUTPUT_REUSE_MIN_BYTES, keptMaxBytes: 0 }, shortStepWeight },
      });
      try {
        expect((await once(worker, "message"))[0]).toEqual({ ready: true });
        const order: string[] = [];
        const replied = new Promise<void>((resolve, reject) =>
          worker.on("message", (reply: { run: number; error?: string }) => {
            if (reply.error) reject(new Error(reply.error));
            order.push(reply.run === 0 ? "long" : "short");
            if (order.length === shorts + 1) resolve();
          }),
        );
        worker.postMessage({ run: 0, feeds: posted(stepOverCache(weights.config, 3, 30_000, 100)), staged: true });
        for (let run = 1; run <= shorts; run++) worker.postMessage({ run, feeds: posted(firstStep(weights.config, 1)) });
        await replied;
        return order;
      } finally {
        const exited = once(worker, "exit");
        worker.postMessage({ close: true });
        await exited;
      }
    }

    it("lets the short steps waiting at the boundary have up to the weight times the stage's time, then goes on", async () => {
      // Equal time: the first stage takes milliseconds, a short step a tenth of one, so some go between the
      // stages and the rest after the long step.
      const equal = (await replyOrder(1, 100)).indexOf("long");
      expect(equal).toBeGreaterThan(0);
      expect(equal).toBeLessThan(100);
      // A weight far beyond what they take: every one goes before the long step's last stage.
      expect((await replyOrder(1e6, 100)).indexOf("long")).toBe(100);
    });
  });
});
