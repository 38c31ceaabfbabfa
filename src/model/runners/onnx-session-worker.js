// @ts-check
// Plain JavaScript, so that the same file runs as a worker_thread from the sources (vitest) and from dist/.
import ort from "onnxruntime-node";
import { parentPort, workerData } from "node:worker_threads";

/**
 * One onnxruntime session on its own thread (see session-threads.ts): onnxruntime-node runs a session
 * synchronously on the calling thread, so running it here keeps the main event loop free.
 * workerData: {graph: model bytes or .onnx path, options: session options}. Answers {ready} or
 * {error} once the session is created, then to each {feeds: {name: {type, data, dims, resident?}}} (one at a
 * time) {outputs: {name: {data, dims}}, inputs} or {error, inputs}, where inputs are the feeds' buffers, and every buffer is transferred;
 * to {drop: ids} it lets those resident copies go; to {close} it ends once the runs before it are done.
 * A feed with `resident` {id, whole: true} is copied here and kept as copy `id`; with
 * {id, whole: false, starts, counts} its data holds the ranges appended to copy `id` since the last run,
 * packed, once copy `relaid.from`, if named, is laid out anew as copy `id` (resident-inputs.ts); either
 * way the run reads the copy (its first product(dims) values).
 */

const port = /** @type {import("node:worker_threads").MessagePort} */ (parentPort);

/** @param {unknown} error */
const messageOf = (error) => (error instanceof Error ? error.message : String(error));

/** @type {ort.InferenceSession} */
let session;
/** Inputs kept between runs, by id (resident-inputs.ts). @type {Map<number, Float32Array | Uint16Array>} */
const resident = new Map();
try {
  session = await ort.InferenceSession.create(workerData.graph, workerData.options);
  port.postMessage({ ready: true });
} catch (error) {
  port.postMessage({ error: messageOf(error) });
  process.exit(1);
}

/**
 * One run: its outputs and its inputs' buffers, which go back for the next run's inputs (fresh
 * memory is dear).
 * @param {Record<string, {type: any, data: any, dims: number[], resident?: any}>} request
 */
async function run(request) {
  const inputs = [...new Set(Object.values(request).map((feed) => feed.data.buffer))];
  try {
    /** @type {Record<string, ort.Tensor>} */
    const feeds = {};
    for (const [name, { type, data, dims, resident: kept }] of Object.entries(request)) {
      // A kept copy may hold more than the tensor (a batch arena's room for larger batches): its start is.
      const values = dims.reduce((product, n) => product * n, 1);
      feeds[name] = new ort.Tensor(type, kept ? residentCopy(kept, data).subarray(0, values) : data, dims);
    }
    const results = await session.run(feeds);
    /** @type {Record<string, {data: unknown, dims: readonly number[]}>} */
    const outputs = {};
    const buffers = new Set();
    for (const [name, tensor] of Object.entries(results)) {
      outputs[name] = { data: tensor.data, dims: tensor.dims };
      buffers.add(/** @type {Float32Array} */ (tensor.data).buffer);
    }
    port.postMessage({ outputs, inputs }, [...buffers, ...inputs]);
  } catch (error) {
    // The main thread sends these whole next time (session-threads.ts): they may be half updated.
    for (const feed of Object.values(request)) {
      if (feed.resident) resident.delete(feed.resident.id);
      if (feed.resident?.relaid) resident.delete(feed.resident.relaid.from);
    }
    port.postMessage({ error: messageOf(error), inputs }, inputs);
  }
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

// One message at a time (session.run yields before it runs): a close waits for the run before it.
// Ending this way, not by Worker.terminate(), matters: a thread terminated while onnxruntime runs
// aborts the whole process ("terminate called after throwing an instance of 'Napi::Error'").
let queue = Promise.resolve();
port.on("message", (/** @type {{feeds: Record<string, {type: any, data: any, dims: number[], resident?: any}>} | {drop: number[]} | {close: true}} */ message) => {
  queue = queue.then(async () => {
    if ("feeds" in message) return run(message.feeds);
    if ("drop" in message) {
      for (const id of message.drop) resident.delete(id);
      return;
    }
    await session.release();
    port.close();
  });
});
