import { readFileSync } from "node:fs";
import type { ModelWeights } from "./model-weights.js";

const HEADER_INTS = 7;

/**
 * Loads a llama2.c "legacy" (v0) checkpoint: a 7-int32 header followed by
 * float32 arrays in a fixed order (docs/models.md, "The llama2.c format").
 */
export function loadLlama2cCheckpoint(path: string, name = "llama2c"): ModelWeights {
  const bytes = readFileSync(path);
  if (bytes.byteLength < HEADER_INTS * 4) throw new Error(`${path}: too short for a llama2.c header`);
  const header = new Int32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + HEADER_INTS * 4));
  const [dim, hiddenDim, layers, heads, kvHeads, rawVocab, contextLength] = Array.from(header);
  if (dim <= 0 || hiddenDim <= 0 || layers <= 0 || heads <= 0 || kvHeads <= 0 || contextLength <= 0 || dim % heads !== 0 || heads % kvHeads !== 0) {
    throw new Error(`${path}: not a llama2.c checkpoint (header ${Array.from(header).join(",")})`);
  }
  const tied = rawVocab > 0;
  const vocabSize = Math.abs(rawVocab);
  const headSize = dim / heads;
  const floats = new Float32Array(bytes.buffer.slice(bytes.byteOffset + HEADER_INTS * 4, bytes.byteOffset + bytes.byteLength));

  let offset = 0;
  const take = (count: number): Float32Array => {
    if (offset + count > floats.length) throw new Error(`${path}: truncated checkpoint`);
    const view = floats.subarray(offset, offset + count);
    offset += count;
    return view;
  };
  const perLayer = (count: number): Float32Array[] => {
    const all = take(layers * count);
    return Array.from({ length: layers }, (_, l) => all.subarray(l * count, (l + 1) * count));
  };

  const embedding = take(vocabSize * dim);
  const attnNorm = perLayer(dim);
  const wq = perLayer(heads * headSize * dim);
  const wk = perLayer(kvHeads * headSize * dim);
  const wv = perLayer(kvHeads * headSize * dim);
  const wo = perLayer(dim * heads * headSize);
  const ffnNorm = perLayer(dim);
  const w1 = perLayer(hiddenDim * dim);
  const w2 = perLayer(dim * hiddenDim);
  const w3 = perLayer(hiddenDim * dim);
  const finalNorm = take(dim);
  take(contextLength * headSize); // legacy RoPE tables (cos, sin): recomputed, never read
  const classifier = tied ? embedding : take(vocabSize * dim);

  return {
    config: {
      name,
      architecture: "llama2c",
      dim,
      hiddenDim,
      layers,
      heads,
      kvHeads,
      headSize,
      vocabSize,
      contextLength,
      ropeTheta: 10000,
      ropeLayout: "interleaved",
      ropeScaling: null,
      normEps: 1e-5,
    },
    embedding,
    layers: Array.from({ length: layers }, (_, l) => ({
      attnNorm: attnNorm[l],
      wq: wq[l],
      wk: wk[l],
      wv: wv[l],
      wo: wo[l],
      ffnNorm: ffnNorm[l],
      w1: w1[l],
      w2: w2[l],
      w3: w3[l],
    })),
    finalNorm,
    classifier,
  };
}
