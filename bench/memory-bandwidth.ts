/**
 * This machine's memory read bandwidth, as one onnxruntime session with the
 * bench's thread count reaches it: several streaming reads of buffers far
 * larger than the caches, each the best of a few runs. The decode step's
 * floor is the bytes it must read divided by the fastest of them.
 */
import ort from "onnxruntime-node";
import { OnnxGraph } from "../src/model/graph/onnx-graph.js";

export interface BandwidthReading {
  /** How the buffer was read. */
  method: string;
  bytesPerSecond: number;
}

const BUFFER_BYTES = 256 * 2 ** 20;
const FLOATS = BUFFER_BYTES / 4;
const GEMV_COLUMNS = 4096;

async function bestSeconds(runs: number, read: () => Promise<unknown> | unknown): Promise<number> {
  let best = Infinity;
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await read();
    best = Math.min(best, (performance.now() - start) / 1000);
  }
  return best;
}

export class ReadBandwidth {
  private constructor(
    private readonly data: Float32Array,
    private readonly copyTarget: Float32Array,
    /** A vector times a 256 MiB weight matrix: how the step graph reads its float32 weights. */
    private readonly gemv: ort.InferenceSession,
    /** A reduction over a 256 MiB input (fed without copying). */
    private readonly reduce: ort.InferenceSession,
  ) {}

  static async create(threads: number): Promise<ReadBandwidth> {
    const data = Float32Array.from({ length: FLOATS }, (_, i) => (i % 13) / 13);
    const rows = FLOATS / GEMV_COLUMNS;
    const gemv = new OnnxGraph();
    gemv.output(gemv.op("MatMul", [gemv.input("x", "float32", [1, rows]), gemv.floats("w", [rows, GEMV_COLUMNS], data)]), "y", "float32", [1, GEMV_COLUMNS]);
    const reduce = new OnnxGraph();
    reduce.output(reduce.op("ReduceMax", [reduce.input("x", "float32", [FLOATS])], { keepdims: 0 }), "y", "float32", []);
    const session = (g: OnnxGraph) => ort.InferenceSession.create(g.encode("bandwidth", { "": 23 }), { intraOpNumThreads: threads, logSeverityLevel: 3 });
    return new ReadBandwidth(data, new Float32Array(FLOATS), await session(gemv), await session(reduce));
  }

  async measure(runs: number): Promise<BandwidthReading[]> {
    const rows = FLOATS / GEMV_COLUMNS;
    const vector = { x: new ort.Tensor("float32", new Float32Array(rows).fill(1), [1, rows]) };
    const input = { x: new ort.Tensor("float32", this.data, [FLOATS]) };
    return [
      { method: `onnxruntime MatMul, [1, ${rows}] x [${rows}, ${GEMV_COLUMNS}] float32 weight`, bytesPerSecond: BUFFER_BYTES / (await bestSeconds(runs, () => this.gemv.run(vector))) },
      { method: "onnxruntime ReduceMax over a 256 MiB input", bytesPerSecond: BUFFER_BYTES / (await bestSeconds(runs, () => this.reduce.run(input))) },
      // Counted as STREAM's copy counts: bytes read plus bytes written.
      { method: "memcpy (Float32Array.set) of 256 MiB, read + written", bytesPerSecond: (2 * BUFFER_BYTES) / (await bestSeconds(runs, () => this.copyTarget.set(this.data))) },
    ];
  }

  async release(): Promise<void> {
    await Promise.all([this.gemv.release(), this.reduce.release()]);
  }
}
