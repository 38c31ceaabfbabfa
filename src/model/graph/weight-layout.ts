import type { OnnxGraph, WeightElementType } from "./onnx-graph.js";

/**
 * The step graph's weights as both sides see them: the files that build and
 * keep them (graph-weights.ts) and the projections that are emitted from them
 * (projection-weights.ts). Types and their vocabularies only, so that neither
 * weight module imports the other.
 */

export const WEIGHT_DTYPES = ["float32", "int8", "int4"] as const;
export type WeightDtype = (typeof WEIGHT_DTYPES)[number];

/**
 * How quantized projections multiply: "int8" quantizes the activations to int8 per
 * block as well (MatMulNBits accuracy_level 4: integer dot products, the fast kernels);
 * "float32" multiplies in float32 by the dequantized weights (accuracy_level 0:
 * exact for those weights, but slower than float32 weights on CPU).
 */
export const QUANTIZED_ACTIVATIONS = ["int8", "float32"] as const;
export type QuantizedActivations = (typeof QUANTIZED_ACTIVATIONS)[number];

export type ProjectionStorage =
  | { dtype: "float32" }
  | { dtype: "int8" | "int4"; blockSize: number; activations: QuantizedActivations };

/** One of the step graph's weights, in the layout the graph reads (transposed, fused; or quantized codes). */
export interface GraphTensor {
  name: string;
  dims: number[];
  data: Float32Array | Uint8Array;
}

/** Where one of the step graph's weights lies in a weights file. */
export interface StoredTensor {
  name: string;
  dims: number[];
  type: WeightElementType;
  offset: number;
  length: number;
}

/** The step graph's weights by name, wherever they are kept. */
export interface GraphWeights {
  /** How the projections are stored (see projection-weights.ts). */
  projections: ProjectionStorage;
  has(name: string): boolean;
  /** Adds the weight to `g` as an initializer and returns its name. */
  place(g: OnnxGraph, name: string): string;
}
