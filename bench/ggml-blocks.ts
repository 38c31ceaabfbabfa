/**
 * ggml's tensor encodings that the llama.cpp anchor writes (docs/llama-cpp-anchor.md): F32, and
 * the two block formats that quantize each run of 32 values of a row with one float16 scale d:
 * - Q8_0, 34 bytes a block: d = max|x| / 127, then 32 int8 codes q = round(x / d); x ~ q * d.
 * - Q4_0, 18 bytes a block: d = m / -8 where m is the value of largest magnitude (sign kept),
 *   codes q = min(15, floor(x / d + 8.5)) in 0..15, value (q - 8) * d; byte j holds element j in
 *   its low nibble and element j + 16 in its high nibble.
 */
import { setFloat16 } from "@petamoriken/float16";

/** ggml_type numbers, as GGUF's tensor infos name them. */
export enum GgmlType {
  F32 = 0,
  Q4_0 = 2,
  Q8_0 = 8,
}

const BLOCK = 32;
const BLOCK_BYTES: Record<GgmlType, number> = { [GgmlType.F32]: 4, [GgmlType.Q4_0]: 18, [GgmlType.Q8_0]: 34 };

/** Bytes of a tensor of this type and shape (dims innermost first; rows must hold whole blocks). */
export function ggmlTensorBytes(type: GgmlType, dims: readonly number[]): number {
  const count = dims.reduce((a, b) => a * b, 1);
  if (type === GgmlType.F32) return count * 4;
  if (dims[0] % BLOCK !== 0) throw new Error(`${GgmlType[type]} needs rows of whole ${BLOCK}-value blocks, got ${dims[0]}`);
  return (count / BLOCK) * BLOCK_BYTES[type];
}

/** C's roundf: halves away from zero (Math.round takes them up). */
const roundAway = (x: number) => Math.sign(x) * Math.round(Math.abs(x));

function quantizeQ8_0(values: Float32Array): Uint8Array {
  const out = new Uint8Array((values.length / BLOCK) * BLOCK_BYTES[GgmlType.Q8_0]);
  const view = new DataView(out.buffer);
  const codes = new Int8Array(out.buffer);
  for (let b = 0, at = 0; b < values.length; b += BLOCK, at += BLOCK_BYTES[GgmlType.Q8_0]) {
    let amax = 0;
    for (let j = 0; j < BLOCK; j++) amax = Math.max(amax, Math.abs(values[b + j]));
    const d = amax / 127;
    const inverse = d ? 1 / d : 0;
    setFloat16(view, at, d, true);
    for (let j = 0; j < BLOCK; j++) codes[at + 2 + j] = roundAway(values[b + j] * inverse);
  }
  return out;
}

function quantizeQ4_0(values: Float32Array): Uint8Array {
  const out = new Uint8Array((values.length / BLOCK) * BLOCK_BYTES[GgmlType.Q4_0]);
  const view = new DataView(out.buffer);
  const half = BLOCK / 2;
  for (let b = 0, at = 0; b < values.length; b += BLOCK, at += BLOCK_BYTES[GgmlType.Q4_0]) {
    let largest = 0;
    for (let j = 0; j < BLOCK; j++) if (Math.abs(values[b + j]) > Math.abs(largest)) largest = values[b + j];
    const d = largest / -8;
    const inverse = d ? 1 / d : 0;
    setFloat16(view, at, d, true);
    const code = (x: number) => Math.min(15, Math.floor(x * inverse + 8.5));
    for (let j = 0; j < half; j++) out[at + 2 + j] = code(values[b + j]) | (code(values[b + half + j]) << 4);
  }
  return out;
}

/** A row-major float32 tensor (rows of dims[0] values) in `type`'s encoding. */
export function encodeGgmlTensor(values: Float32Array, type: GgmlType): Uint8Array {
  if (type === GgmlType.F32) return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  return type === GgmlType.Q8_0 ? quantizeQ8_0(values) : quantizeQ4_0(values);
}
