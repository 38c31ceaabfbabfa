// @ts-check
// Plain JavaScript, so that the same file runs as a worker_thread from the sources (vitest) and from dist/.
import ort from "onnxruntime-node";
import { parentPort, workerData } from "node:worker_threads";

/**
 * One onnxruntime session on its own thread (see session-threads.ts): onnxruntime-node runs a session
 * synchronously on the calling thread, so running it here keeps the main event loop free.
 * workerData: {graph: model bytes or .onnx path, options: session options}. Answers {ready} or
 * {error} once the session is created, then to each {feeds: {name: {type, data, dims}}} (one at a
 * time) {outputs: {name: {data, dims}}}, every output buffer transferred, or {error}.
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

port.on("message", async (/** @type {{feeds: Record<string, {type: any, data: any, dims: number[]}>}} */ request) => {
  try {
    /** @type {Record<string, ort.Tensor>} */
    const feeds = {};
    for (const [name, { type, data, dims }] of Object.entries(request.feeds)) feeds[name] = new ort.Tensor(type, data, dims);
    const results = await session.run(feeds);
    /** @type {Record<string, {data: unknown, dims: readonly number[]}>} */
    const outputs = {};
    const buffers = new Set();
    for (const [name, tensor] of Object.entries(results)) {
      outputs[name] = { data: tensor.data, dims: tensor.dims };
      buffers.add(/** @type {Float32Array} */ (tensor.data).buffer);
    }
    port.postMessage({ outputs }, [...buffers]);
  } catch (error) {
    port.postMessage({ error: messageOf(error) });
  }
});
