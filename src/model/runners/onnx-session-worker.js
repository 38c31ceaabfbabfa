// @ts-check
// Plain JavaScript, so that the same file runs as a worker_thread from the sources (vitest) and from dist/.
import ort from "onnxruntime-node";
import { parentPort, receiveMessageOnPort, workerData } from "node:worker_threads";
import { TransferBuffers } from "./transfer-buffers.js";

/**
 * One onnxruntime session on its own thread (see session-threads.ts): onnxruntime-node runs a session
 * synchronously on the calling thread, so running it here keeps the main event loop free.
 * workerData: {graph: model bytes or .onnx path, stages: the same model cut into stages, in order
 * (possibly none), options: session options, posted: an Int32Array over shared memory whose first
 * value the main thread bumps after posting each message, outputReuse: {minBytes, keptMaxBytes},
 * shortStepWeight}.
 * Answers {ready} or {error} once the sessions are created, then to each {run: id, feeds: {name:
 * {type, data, dims, resident?}}, staged, spare} {run: id, outputs: {name: {data, dims}}, inputs} or
 * {run: id, error, inputs}, where inputs are the feeds' buffers, and every buffer is transferred; to
 * {drop: ids} it lets those resident copies go; to {close} it ends once the runs before it are done.
 * `spare` lends buffers of earlier outputs, kept up to keptMaxBytes: an output of minBytes or more is
 * copied into one of them (or into a fresh one, sized to the next power of two) rather than sent in
 * onnxruntime's own, so that the main thread collects no fresh buffer per step (session-threads.ts).
 * A staged run goes through the stages one after another, and a run that arrives meanwhile runs
 * between two of them: a short step need not wait for a long one (docs/worker-threads.md). The
 * stages' outputs come back as the whole graph's: the same values, `new_keys`, `new_values` and
 * `queries` joined in layer order.
 * A feed with `resident` {id, whole: true} is copied here and kept as copy `id`; with
 * {id, whole: false, starts, counts} its data holds the ranges appended to copy `id` since the last run,
 * packed, once copy `relaid.from`, if named, is laid out anew as copy `id` (resident-inputs.ts); either
 * way the run reads the copy (its first product(dims) values).
 */

const port = /** @type {import("node:worker_threads").MessagePort} */ (parentPort);

/** @param {unknown} error */
const messageOf = (error) => (error instanceof Error ? error.message : String(error));

/** @typedef {Record<string, {type: any, data: any, dims: number[], resident?: any}>} Feeds */
/** @typedef {{run: number, feeds: Feeds, staged?: boolean, spare?: ArrayBuffer[]} | {drop: number[]} | {close: true}} Message */

/** @type {ort.InferenceSession} */
let session;
/** @type {ort.InferenceSession[]} */
const stages = [];
/** Inputs kept between runs, by id (resident-inputs.ts). @type {Map<number, Float32Array | Uint16Array>} */
const resident = new Map();
try {
  session = await ort.InferenceSession.create(workerData.graph, workerData.options);
  for (const graph of workerData.stages ?? []) stages.push(await ort.InferenceSession.create(graph, workerData.options));
  port.postMessage({ ready: true });
} catch (error) {
  port.postMessage({ error: messageOf(error) });
  process.exit(1);
}

/** Output buffers the main thread lent, kept up to outputReuse.keptMaxBytes. */
const spareOutputs = new TransferBuffers(workerData.outputReuse.keptMaxBytes);

/**
 * `data` as it goes back: a large output copied into a lent buffer (or a fresh one of a size that a
 * later, slightly larger output fits too), a small one as it is.
 * @param {Float32Array | Uint16Array} data
 */
function outgoing(data) {
  if (data.byteLength < workerData.outputReuse.minBytes) return data;
  const copy = /** @type {Float32Array | Uint16Array} */ (new /** @type {any} */ (data.constructor)(spareOutputs.take(data.byteLength), 0, data.length));
  copy.set(data);
  return copy;
}

/** Step outputs stacked over layers, which a staged run joins from its stages (names as in step-io.ts, which plain JS cannot import here). */
const STACKED = new Set(["new_keys", "new_values", "queries"]);

/**
 * One run: its outputs and its inputs' buffers, which go back for the next run's inputs (fresh
 * memory is dear).
 * @param {{run: number, feeds: Feeds, staged?: boolean, spare?: ArrayBuffer[]}} message
 */
async function run({ run: id, feeds: request, staged, spare }) {
  for (const buffer of spare ?? []) spareOutputs.give(buffer);
  const inputs = [...new Set(Object.values(request).map((feed) => feed.data.buffer))];
  try {
    /** @type {Record<string, ort.Tensor>} */
    const feeds = {};
    for (const [name, { type, data, dims, resident: kept }] of Object.entries(request)) {
      // A kept copy may hold more than the tensor (a batch arena's room for larger batches): its start is.
      const values = dims.reduce((product, n) => product * n, 1);
      feeds[name] = new ort.Tensor(type, kept ? residentCopy(kept, data).subarray(0, values) : data, dims);
    }
    // The main thread sends `staged` only to a thread that holds stages (session-threads.ts).
    const results = staged ? await runStages(feeds) : await session.run(feeds);
    /** @type {Record<string, {data: unknown, dims: readonly number[]}>} */
    const outputs = {};
    const buffers = new Set();
    for (const [name, tensor] of Object.entries(results)) {
      const data = outgoing(/** @type {Float32Array | Uint16Array} */ (tensor.data));
      outputs[name] = { data, dims: tensor.dims };
      buffers.add(data.buffer);
    }
    port.postMessage({ run: id, outputs, inputs }, [...buffers, ...inputs]);
  } catch (error) {
    // The main thread sends these whole next time (session-threads.ts): they may be half updated.
    for (const feed of Object.values(request)) {
      if (feed.resident) resident.delete(feed.resident.id);
      if (feed.resident?.relaid) resident.delete(feed.resident.relaid.from);
    }
    port.postMessage({ run: id, error: messageOf(error), inputs }, inputs);
  }
}

/**
 * How long a thread that has just run a step between two stages waits for the next before going on
 * with the stages: about what a short step's reply takes to become its next step on the event loop,
 * so that a stream stepping between the stages keeps its pace (docs/worker-threads.md).
 */
const ANTICIPATION_MS = 0.5;

/**
 * The stages in turn, each fed its inputs and the residual stream from the one before; the outputs
 * as the whole graph's. Between two stages, the runs that arrived meanwhile go first, until they
 * have had `shortStepWeight` times as much of the thread as the last stage took: the staged run and
 * the runs beside it share the thread by time, weighted (weighted fair queuing), for a short
 * stream's step waits on its stream while a stage is a piece of a long one (docs/worker-threads.md,
 * "Short steps' weight"). Once a run has gone beside this one, the thread waits up to
 * ANTICIPATION_MS for the next while their share lasts (anticipatory scheduling: Iyer and Druschel,
 * SOSP 2001), rather than start a stage that the next would wait behind.
 * @param {Record<string, ort.Tensor>} feeds
 */
async function runStages(feeds) {
  /** @type {Record<string, ort.Tensor>} */
  const outputs = {};
  /** @type {Record<string, ort.Tensor[]>} */
  const stacked = {};
  /** @type {ort.Tensor | undefined} */
  let hidden;
  let lastStageMs = 0;
  let anticipate = false;
  for (const [index, stage] of stages.entries()) {
    if (index > 0) anticipate = (await runBeside(lastStageMs * workerData.shortStepWeight, anticipate)) || anticipate;
    const stageFeeds = Object.fromEntries(stage.inputNames.map((name) => [name, name === "hidden_in" ? /** @type {ort.Tensor} */ (hidden) : feeds[name]]));
    const started = performance.now();
    const results = await stage.run(stageFeeds);
    lastStageMs = performance.now() - started;
    for (const [name, tensor] of Object.entries(results)) {
      if (name === "hidden_out") hidden = tensor;
      else if (STACKED.has(name)) (stacked[name] ??= []).push(tensor);
      else outputs[name] = tensor;
    }
  }
  for (const [name, parts] of Object.entries(stacked)) outputs[name] = joined(parts);
  return outputs;
}

/**
 * Between two stages: drops that arrived, and runs that arrived (or, with `anticipate`, arrive)
 * until those runs have had `shareMs` of the thread (runStages); whether any ran. A close and
 * another staged run wait for the staged one (the main thread sends none beside it).
 * @param {number} shareMs
 * @param {boolean} anticipate
 */
async function runBeside(shareMs, anticipate) {
  let usedMs = 0;
  let ran = false;
  while (usedMs < shareMs) {
    const message = nextBeside(anticipate || ran ? ANTICIPATION_MS : 0);
    if (!message) break;
    const started = performance.now();
    await run(message);
    usedMs += performance.now() - started;
    ran = true;
  }
  return ran;
}

/**
 * The first pending run that is not staged, having let pending drops go; waits up to `waitMs` for
 * one to arrive, blocked on `posted`, which the main thread bumps after each message (a timer cannot
 * wait less than a millisecond, and spinning measured slower: docs/worker-threads.md).
 * @param {number} waitMs
 * @returns {{run: number, feeds: Feeds, spare?: ArrayBuffer[]} | undefined}
 */
function nextBeside(waitMs) {
  const until = performance.now() + waitMs;
  for (;;) {
    const seen = Atomics.load(workerData.posted, 0);
    receiveAll();
    for (let index = 0; index < pending.length; index++) {
      const message = pending[index];
      if ("drop" in message) {
        pending.splice(index--, 1);
        dropResident(message.drop);
      } else if ("run" in message && !message.staged) {
        pending.splice(index, 1);
        return message;
      }
    }
    const left = until - performance.now();
    if (left <= 0) return undefined;
    Atomics.wait(workerData.posted, 0, seen, left);
  }
}

/**
 * Tensors of one type and the same trailing dimensions, one after another along the first.
 * @param {ort.Tensor[]} parts
 */
function joined(parts) {
  const data = /** @type {Float32Array | Uint16Array} */ (new /** @type {any} */ (parts[0].data.constructor)(parts.reduce((sum, part) => sum + part.data.length, 0)));
  let at = 0;
  for (const part of parts) {
    data.set(/** @type {Float32Array | Uint16Array} */ (part.data), at);
    at += part.data.length;
  }
  return new ort.Tensor(parts[0].type, data, [parts.reduce((sum, part) => sum + part.dims[0], 0), ...parts[0].dims.slice(1)]);
}

/**
 * The copy a resident feed names, after applying what it sends.
 * @param {{id: number, whole: boolean, relaid?: Relaid, starts?: number[], counts?: number[]}} feed
 * @param {Float32Array | Uint16Array} data
 */
function residentCopy(feed, data) {
  if (feed.whole) {
    // Into this thread's own memory, as the buffer goes back for reuse: fresh pages, slow to touch on
    // some machines (docs/worker-threads.md), are paid for here rather than on the event loop.
    const copy = data.slice();
    resident.set(feed.id, copy);
    return copy;
  }
  if (feed.relaid) resident.set(feed.id, relaid(feed.relaid));
  const copy = resident.get(feed.id);
  if (!copy) throw new Error(`resident input ${feed.id} is not held by this session thread`);
  const { starts = [], counts = [] } = feed;
  let at = 0;
  for (let i = 0; i < starts.length; i++) {
    copy.set(data.subarray(at, at + counts[i]), starts[i]);
    at += counts[i];
  }
  return copy;
}

/** @typedef {{from: number, fromRowSlots: number, rowSlots: number, width: number, length: number, pad: number}} Relaid */

/**
 * Copy `from` laid out anew (a batch arena's resize, batch-arena.ts): `length` values in rows of `rowSlots`
 * slots of `width` values, each keeping its first slots, as many as fit, the rest `pad`. The old copy goes.
 * @param {Relaid} relaid
 */
function relaid({ from, fromRowSlots, rowSlots, width, length, pad }) {
  const old = resident.get(from);
  if (!old) throw new Error(`resident input ${from} is not held by this session thread`);
  resident.delete(from);
  const copy = /** @type {Float32Array | Uint16Array} */ (new /** @type {any} */ (old.constructor)(length)).fill(pad);
  const kept = Math.min(fromRowSlots, rowSlots) * width;
  const rows = Math.min(old.length / (fromRowSlots * width), length / (rowSlots * width));
  for (let row = 0; row < rows; row++) copy.set(old.subarray(row * fromRowSlots * width, row * fromRowSlots * width + kept), row * rowSlots * width);
  return copy;
}

/** Messages not yet handled, in arrival order. @type {Message[]} */
const pending = [];
let working = false;
let closing = false;

/** Every message received so far, whether or not its event has been dispatched yet. */
function receiveAll() {
  for (let received = receiveMessageOnPort(port); received; received = receiveMessageOnPort(port)) pending.push(received.message);
}

/** @param {number[]} ids */
function dropResident(ids) {
  for (const id of ids) resident.delete(id);
}

/** Handles pending messages one at a time, in order, until none is left or a close ends the thread. */
async function work() {
  if (working) return;
  working = true;
  while (pending.length > 0 && !closing) {
    const message = /** @type {Message} */ (pending.shift());
    if ("run" in message) await run(message);
    else if ("drop" in message) dropResident(message.drop);
    else closing = true;
  }
  working = false;
  if (closing) {
    // Ending this way, not by Worker.terminate(), matters: a thread terminated while onnxruntime runs
    // aborts the whole process ("terminate called after throwing an instance of 'Napi::Error'").
    await session.release();
    for (const stage of stages) await stage.release();
    port.close();
  }
}

port.on("message", (/** @type {Message} */ message) => {
  pending.push(message);
  void work();
});
