import type { OnnxGraph } from "./onnx-graph.js";
import { quantizeBlocks, type QuantizedBits } from "../../numerics/quantize.js";
import type { GraphTensor, GraphWeights, ProjectionStorage, QuantizedActivations, WeightDtype } from "./weight-layout.js";

/**
 * The step graph's projections (q/k/v, output, gate/up, down and the
 * classifier): how they are stored and how "x times W" is emitted.
 * Embeddings and norms are always float32.
 */

export const FLOAT32_PROJECTIONS: ProjectionStorage = { dtype: "float32" };

/** The block size `convert` quantizes with: finer scales, for 5-12% of MatMulNBits' speed against blocks of 128 (docs/benchmarks.md, quantized weights). */
export const DEFAULT_BLOCK_SIZE = 32;

/** The storage `convert --quantize dtype [--quantized-activations a]` asks for. */
export function projectionStorage(dtype: WeightDtype, activations?: QuantizedActivations): ProjectionStorage {
  if (dtype === "float32") {
    if (activations !== undefined) throw new Error("quantized activations apply to quantized weights only: add --quantize int8 or int4");
    return FLOAT32_PROJECTIONS;
  }
  return { dtype, blockSize: DEFAULT_BLOCK_SIZE, activations: activations ?? "int8" };
}

const BITS: Record<"int8" | "int4", QuantizedBits> = { int8: 8, int4: 4 };
const ACCURACY_LEVEL: Record<QuantizedActivations, number> = { int8: 4, float32: 0 };

/** Names of a quantized projection's parts, for MatMulNBits' inputs. */
export function quantizedParts(name: string): { codes: string; scales: string; zeroPoints: string } {
  return { codes: `${name}.codes`, scales: `${name}.scales`, zeroPoints: `${name}.zero_points` };
}

/**
 * The tensors that store projection `name`, given as `matrix` [out, in] (one row
 * per output): float32 transposed to [in, out] for MatMul, or quantized along
 * `in` in MatMulNBits' layout.
 */
export function projectionTensors(name: string, matrix: Float32Array, outFeatures: number, inFeatures: number, storage: ProjectionStorage): GraphTensor[] {
  if (storage.dtype === "float32") return [{ name, dims: [inFeatures, outFeatures], data: transpose(matrix, outFeatures, inFeatures) }];
  const q = quantizeBlocks(matrix, outFeatures, inFeatures, BITS[storage.dtype], storage.blockSize);
  const parts = quantizedParts(name);
  const blocks = q.scales.length / outFeatures;
  return [
    { name: parts.codes, dims: [outFeatures, blocks, q.codes.length / (outFeatures * blocks)], data: q.codes },
    { name: parts.scales, dims: [outFeatures * blocks], data: q.scales },
    { name: parts.zeroPoints, dims: [q.zeroPoints.length], data: q.zeroPoints },
  ];
}

/** Emits x [..., in] times projection `name`: MatMul by a float32 weight, or MatMulNBits by a quantized one. */
export function emitProjection(g: OnnxGraph, weights: GraphWeights, x: string, name: string, inFeatures: number, outFeatures: number): string {
  const storage = weights.projections;
  if (storage.dtype === "float32") return g.op("MatMul", [x, weights.place(g, name)]);
  const parts = quantizedParts(name);
  return g.op(
    "MatMulNBits",
    [x, weights.place(g, parts.codes), weights.place(g, parts.scales), weights.place(g, parts.zeroPoints)],
    { K: inFeatures, N: outFeatures, bits: BITS[storage.dtype], block_size: storage.blockSize, accuracy_level: ACCURACY_LEVEL[storage.activations] },
    undefined,
    "com.microsoft",
  );
}

/** [rows, cols] row-major -> [cols, rows] row-major. */
function transpose(matrix: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = matrix[r * cols + c];
  return out;
}
