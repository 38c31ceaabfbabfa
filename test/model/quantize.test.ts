import ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { OnnxGraph } from "../../src/model/graph/onnx-graph.js";
import { quantizeBlocks, type QuantizedBits } from "../../src/numerics/quantize.js";
import { SeededRandom } from "../../src/numerics/seeded-random.js";
import { dequantizeBlocks } from "../reference/block-dequantize.js";

function randomMatrix(rows: number, columns: number, seed: number): Float32Array {
  const random = new SeededRandom(seed);
  return Float32Array.from({ length: rows * columns }, () => 2 * random.next() - 1);
}

/** onnxruntime's MatMulNBits with the quantized matrix as B, at accuracy level 0 (float32 arithmetic). */
async function matMulNBits(q: ReturnType<typeof quantizeBlocks>, a: Float32Array, m: number): Promise<Float32Array> {
  const g = new OnnxGraph();
  const blocks = Math.ceil(q.columns / q.blockSize);
  const inputs = [
    g.input("a", "float32", [m, q.columns]),
    g.bytes("codes", [q.rows, blocks, (q.blockSize * q.bits) / 8], q.codes),
    g.floats("scales", [q.scales.length], q.scales),
    g.bytes("zero_points", [q.zeroPoints.length], q.zeroPoints),
  ];
  const attributes = { K: q.columns, N: q.rows, bits: q.bits, block_size: q.blockSize, accuracy_level: 0 };
  g.output(g.op("MatMulNBits", inputs, attributes, undefined, "com.microsoft"), "y", "float32", [m, q.rows]);
  const session = await ort.InferenceSession.create(g.encode("matmul-nbits", { "": 23, "com.microsoft": 1 }));
  try {
    return (await session.run({ a: new ort.Tensor("float32", a, [m, q.columns]) })).y.data as Float32Array;
  } finally {
    await session.release();
  }
}

describe("block quantization for MatMulNBits", () => {
  it("codes a block as (value / scale) + zero point, 4-bit codes low nibble first", () => {
    // min -1.5, max 2.25: 4-bit scale 3.75 / 15 = 0.25, zero point 6.
    const block = Float32Array.of(-1.5, 0, 0.5, 2.25, ...new Array(12).fill(0.75));
    const q = quantizeBlocks(block, 1, 16, 4, 16);
    expect(Array.from(q.scales)).toEqual([0.25]);
    expect(Array.from(q.zeroPoints)).toEqual([6]);
    // codes 0, 6, 8, 15, then 9s
    expect(Array.from(q.codes)).toEqual([0x60, 0xf8, 0x99, 0x99, 0x99, 0x99, 0x99, 0x99]);
    const q8 = quantizeBlocks(block, 1, 16, 8, 16);
    expect(Array.from(q8.scales)).toEqual([Math.fround(3.75 / 255)]);
    expect(Array.from(q8.zeroPoints)).toEqual([102]);
    expect(Array.from(q8.codes.subarray(0, 5))).toEqual([0, 102, 136, 255, 153]);
  });

  it.each([
    [4, 32, 64],
    [4, 32, 172],
    [8, 32, 172],
    [8, 16, 48],
    [4, 128, 100],
  ] as const)("keeps every value within half a step at %d bits, block %d, %d columns, zero exact", (bits, blockSize, columns) => {
    const rows = 24;
    const matrix = randomMatrix(rows, columns, bits * 1000 + columns);
    for (let i = 0; i < matrix.length; i += 7) matrix[i] = 0;
    const q = quantizeBlocks(matrix, rows, columns, bits as QuantizedBits, blockSize);
    const restored = dequantizeBlocks(q);
    const blocks = Math.ceil(columns / blockSize);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < columns; c++) {
        const scale = q.scales[r * blocks + Math.floor(c / blockSize)];
        const value = matrix[r * columns + c];
        if (value === 0) expect(restored[r * columns + c]).toBe(0);
        else expect(Math.abs(restored[r * columns + c] - value)).toBeLessThanOrEqual(scale * 0.5 * (1 + 1e-6));
      }
    }
  });

  it.each([
    [4, 32, 172],
    [8, 32, 172],
    [4, 16, 64],
    [8, 128, 256],
  ] as const)("round-trips through onnxruntime exactly: MatMulNBits of the identity is the TypeScript dequantization (%d bits, block %d, K %d)", async (bits, blockSize, columns) => {
    const rows = 40;
    const q = quantizeBlocks(randomMatrix(rows, columns, 7 + bits + columns), rows, columns, bits as QuantizedBits, blockSize);
    const restored = dequantizeBlocks(q);
    const identity = new Float32Array(columns * columns);
    for (let i = 0; i < columns; i++) identity[i * columns + i] = 1;
    const y = await matMulNBits(q, identity, columns); // row k = column k of the weights
    for (let k = 0; k < columns; k++) for (let n = 0; n < rows; n++) expect(y[k * rows + n]).toBe(restored[n * columns + k]);
  });

  it("refuses what it cannot quantize, naming the problem", () => {
    expect(() => quantizeBlocks(new Float32Array(64), 2, 32, 4, 24)).toThrow("block size must be a power of two of at least 16, not 24");
    expect(() => quantizeBlocks(new Float32Array(64), 2, 32, 4, 8)).toThrow("block size must be a power of two of at least 16, not 8");
    expect(() => quantizeBlocks(new Float32Array(60), 2, 32, 4, 32)).toThrow("a [2, 32] matrix has 64 values, not 60");
    const withNaN = new Float32Array(64);
    withNaN[40] = Number.NaN;
    expect(() => quantizeBlocks(withNaN, 2, 32, 8, 32)).toThrow("cannot quantize NaN (row 1, column 8)");
  });
});
