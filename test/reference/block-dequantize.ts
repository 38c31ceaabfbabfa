import type { BlockQuantizedMatrix } from "../../src/numerics/quantize.js";

/**
 * MatMulNBits' dequantization written out from its definition, independent of
 * the quantizer: element k of row n is (code - zeroPoint) * scale of its block,
 * codes and zero points packed low nibble first at 4 bits. Returns [rows, columns].
 */
export function dequantizeBlocks(q: BlockQuantizedMatrix): Float32Array {
  const { bits, blockSize, rows, columns } = q;
  const blocks = Math.ceil(columns / blockSize);
  const perByte = 8 / bits;
  const zeroPointRow = Math.ceil(blocks / perByte);
  const unpack = (bytes: Uint8Array, index: number) => (bits === 8 ? bytes[index] : (bytes[index >> 1] >> ((index & 1) * 4)) & 0xf);
  const out = new Float32Array(rows * columns);
  for (let n = 0; n < rows; n++) {
    for (let k = 0; k < columns; k++) {
      const block = Math.floor(k / blockSize);
      const code = unpack(q.codes, (n * blocks + block) * blockSize + (k % blockSize));
      const zeroPoint = unpack(q.zeroPoints, n * zeroPointRow * perByte + block);
      out[n * columns + k] = (code - zeroPoint) * q.scales[n * blocks + block];
    }
  }
  return out;
}
