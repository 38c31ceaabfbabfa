/**
 * Block-wise asymmetric quantization in the layout of onnxruntime's
 * com.microsoft MatMulNBits: a weight matrix [N, K] (out features, in
 * features: each row is one output's weights) is cut along K into blocks of
 * `blockSize`; each block keeps unsigned `bits`-bit codes q, a float32 scale
 * and a zero point z, and stands for the values (q - z) * scale.
 */

export type QuantizedBits = 4 | 8;

export interface BlockQuantizedMatrix {
  bits: QuantizedBits;
  blockSize: number;
  /** Out features (rows). */
  rows: number;
  /** In features (columns); the last block of a row is padded when blockSize does not divide it. */
  columns: number;
  /** [rows, blocksPerRow, blockSize * bits / 8]: codes, for 4 bits two a byte, the first in the low nibble. */
  codes: Uint8Array;
  /** [rows, blocksPerRow] */
  scales: Float32Array;
  /** [rows, ceil(blocksPerRow * bits / 8)]: packed like the codes. */
  zeroPoints: Uint8Array;
}

/** The block sizes MatMulNBits takes: powers of two from 16. */
function checkBlockSize(blockSize: number): void {
  if (!Number.isInteger(blockSize) || blockSize < 16 || (blockSize & (blockSize - 1)) !== 0) {
    throw new Error(`block size must be a power of two of at least 16, not ${blockSize}`);
  }
}

function blocksPerRow(columns: number, blockSize: number): number {
  return Math.ceil(columns / blockSize);
}

/** Bytes of one row's zero points. */
function zeroPointBytesPerRow(columns: number, blockSize: number, bits: QuantizedBits): number {
  return Math.ceil((blocksPerRow(columns, blockSize) * bits) / 8);
}

/** Writes a `bits`-bit value at element `index` of a packed array. */
function pack(into: Uint8Array, byteOffset: number, index: number, value: number, bits: QuantizedBits): void {
  if (bits === 8) into[byteOffset + index] = value;
  else into[byteOffset + (index >> 1)] |= index & 1 ? value << 4 : value;
}

/**
 * Quantizes `matrix` ([rows, columns] row-major). Each block's range is
 * widened to include 0, so 0 is exact (a code equals the zero point) and the
 * zero point is in range; every value is then within scale / 2 of its
 * dequantized value.
 */
export function quantizeBlocks(matrix: Float32Array, rows: number, columns: number, bits: QuantizedBits, blockSize: number): BlockQuantizedMatrix {
  checkBlockSize(blockSize);
  if (matrix.length !== rows * columns) throw new Error(`a [${rows}, ${columns}] matrix has ${rows * columns} values, not ${matrix.length}`);
  const blocks = blocksPerRow(columns, blockSize);
  const blockBytes = (blockSize * bits) / 8;
  const zeroPointRow = zeroPointBytesPerRow(columns, blockSize, bits);
  const maxCode = (1 << bits) - 1;
  const codes = new Uint8Array(rows * blocks * blockBytes);
  const scales = new Float32Array(rows * blocks);
  const zeroPoints = new Uint8Array(rows * zeroPointRow);
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < blocks; b++) {
      const start = r * columns + b * blockSize;
      const end = r * columns + Math.min(columns, (b + 1) * blockSize);
      let min = 0;
      let max = 0;
      for (let i = start; i < end; i++) {
        const value = matrix[i];
        if (!Number.isFinite(value)) throw new Error(`cannot quantize ${value} (row ${r}, column ${i - r * columns})`);
        if (value < min) min = value;
        if (value > max) max = value;
      }
      // Rounded to float32 first: the codes are chosen for the scale the graph will use.
      const scale = Math.fround((max - min) / maxCode);
      const zeroPoint = scale === 0 ? 0 : Math.min(maxCode, Math.max(0, Math.round(-min / scale)));
      scales[r * blocks + b] = scale;
      pack(zeroPoints, r * zeroPointRow, b, zeroPoint, bits);
      const blockOffset = (r * blocks + b) * blockBytes;
      for (let i = 0; i < blockSize; i++) {
        // Padding past the row's end gets the zero point: it stands for 0.
        const code = start + i < end && scale !== 0 ? Math.min(maxCode, Math.max(0, Math.round(matrix[start + i] / scale) + zeroPoint)) : zeroPoint;
        pack(codes, blockOffset, i, code, bits);
      }
    }
  }
  return { bits, blockSize, rows, columns, codes, scales, zeroPoints };
}
