/**
 * This machine's memory read bandwidth, as one thread of onnxruntime reaches it:
 * the fastest of several streaming reads of a buffer far larger than the caches,
 * each the best of a few runs. The decode step's floor is the bytes it must read
 * divided by this.
 */
import ort from "onnxruntime-node";
import { OnnxGraph } from "../src/model/onnx-graph.js";

export interface BandwidthReading {
  /** How the buffer was read. */
  method: string;
  bytesPerSecond: number;
}

const BUFFER_BYTES = 256 * 2 ** 20;

async function bestSeconds(runs: number, read: () => Promise<unknown> | unknown): Promise<number> {
  let best = Infinity;
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await read();
    best = Math.min(best, (performance.now() - start) / 1000);
  }
  return best;
}

async function session(g: OnnxGraph, threads: number): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(g.encode("bandwidth", { "": 23 }), { intraOpNumThreads: threads, logSeverityLevel: 3 });
}

/** Each method's reading; the step floor uses the largest. */
export async function measureReadBandwidth(threads: number, runs: number): Promise<BandwidthReading[]> {
  const floats = BUFFER_BYTES / 4;
  const data = Float32Array.from({ length: floats }, (_, i) => (i % 13) / 13);
  const readings: BandwidthReading[] = [];

  // A vector times a 256 MiB weight matrix: how the step graph reads its float32 weights.
  const columns = 4096;
  const gemv = new OnnxGraph();
  gemv.output(gemv.op("MatMul", [gemv.input("x", "float32", [1, floats / columns]), gemv.floats("w", [floats / columns, columns], data)]), "y", "float32", [1, columns]);
  const gemvSession = await session(gemv, threads);
  const x = { x: new ort.Tensor("float32", new Float32Array(floats / columns).fill(1), [1, floats / columns]) };
  readings.push({ method: "onnxruntime MatMul, [1, 16384] x [16384, 4096] float32 weight", bytesPerSecond: BUFFER_BYTES / (await bestSeconds(runs, () => gemvSession.run(x))) });
  await gemvSession.release();

  // A reduction over a 256 MiB input (fed without copying).
  const reduce = new OnnxGraph();
  reduce.output(reduce.op("ReduceMax", [reduce.input("x", "float32", [floats])], { keepdims: 0 }), "y", "float32", []);
  const reduceSession = await session(reduce, threads);
  const input = { x: new ort.Tensor("float32", data, [floats]) };
  readings.push({ method: "onnxruntime ReduceMax over a 256 MiB input", bytesPerSecond: BUFFER_BYTES / (await bestSeconds(runs, () => reduceSession.run(input))) });
  await reduceSession.release();

  // memcpy (TypedArray.set), counted as STREAM's copy counts: bytes read plus bytes written.
  const target = new Float32Array(floats);
  readings.push({ method: "memcpy (Float32Array.set) of 256 MiB, read + written", bytesPerSecond: (2 * BUFFER_BYTES) / (await bestSeconds(runs, () => target.set(data))) });
  return readings;
}
