// @ts-check
// Plain JavaScript, so that the same file runs as a worker_thread from the sources (vitest) and from dist/.
import ort from "onnxruntime-node";
import { parentPort, workerData } from "node:worker_threads";

/**
 * One onnxruntime session on its own thread (see session-threads.ts): onnxruntime-node runs a session
 * synchronously on the calling thread, so running it here keeps the main event loop free.
 * workerData: {graph: model bytes or .onnx path, options: session options}. Answers {ready} or
 * {error} once the session is created, then to each {feeds: {name: {type, data, dims}}} (one at a
 * time) {outputs: {name: {data, dims}}, inputs} or {error, inputs}, where inputs are the feeds' buffers, and every buffer is transferred;
 * to {close} it ends once the runs before it are done.
 */

const port = /** @type {import("node:worker_threads").MessagePort} */ (parentPort);

/** @param {unknown} error */
const messageOf = (error) => (error instanceof Error ? error.message : String(error));

/** @type {ort.InferenceSession} */
let session;
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
 * @param {Record<string, {type: any, data: any, dims: number[]}>} request
 */
async function run(request) {
  const inputs = [...new Set(Object.values(request).map((feed) => feed.data.buffer))];
  try {
    /** @type {Record<string, ort.Tensor>} */
    const feeds = {};
    for (const [name, { type, data, dims }] of Object.entries(request)) feeds[name] = new ort.Tensor(type, data, dims);
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
    port.postMessage({ error: messageOf(error), inputs }, inputs);
  }
}

// One message at a time (session.run yields before it runs): a close waits for the run before it.
// Ending this way, not by Worker.terminate(), matters: a thread terminated while onnxruntime runs
// aborts the whole process ("terminate called after throwing an instance of 'Napi::Error'").
let queue = Promise.resolve();
port.on("message", (/** @type {{feeds: Record<string, {type: any, data: any, dims: number[]}>} | {close: true}} */ message) => {
  queue = queue.then(async () => {
    if ("feeds" in message) return run(message.feeds);
    await session.release();
    port.close();
  });
});
