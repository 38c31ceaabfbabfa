import { describe, expect, it } from "vitest";
import { pool1d } from "../../src/policies/scorers/pooling.js";

const pool = (values: number[], kernel: number, mode: "max" | "avg" | "none") => Array.from(pool1d(Float64Array.from(values), kernel, mode));

describe("pool1d (PyTorch semantics: stride 1, padding k//2)", () => {
  it("max-pools with -Infinity padding, so negative edges are not lifted to 0", () => {
    expect(pool([1, 2, 3, 4, 5], 3, "max")).toEqual([2, 3, 4, 5, 5]);
    expect(pool([-3, -1, -2], 3, "max")).toEqual([-1, -1, -1]);
    expect(pool([-5, -4, -9, -7], 3, "max")).toEqual([-4, -4, -4, -7]);
  });

  it("avg-pools dividing by k even at the edges (zero padding counted)", () => {
    // Edges: (0 + 1 + 2) / 3 and (4 + 5 + 0) / 3.
    expect(pool([1, 2, 3, 4, 5], 3, "avg")).toEqual([1, 2, 3, 4, 3]);
    // A kernel wider than the input: every output is the full sum over k = 5.
    expect(pool([1, 2], 5, "avg")).toEqual([3 / 5, 3 / 5]);
    // k = 5 on 6 values: first output (0 + 0 + 6 + 0 + 3) / 5.
    expect(pool([6, 0, 3, 0, 0, 10], 5, "avg")).toEqual([9 / 5, 9 / 5, 9 / 5, 13 / 5, 13 / 5, 10 / 5]);
  });

  it("is the identity for kernel 1 and for pooling none", () => {
    expect(pool([4, -1, 7], 1, "max")).toEqual([4, -1, 7]);
    expect(pool([4, -1, 7], 1, "avg")).toEqual([4, -1, 7]);
    expect(pool([4, -1, 7], 7, "none")).toEqual([4, -1, 7]);
  });

  it("keeps an empty input empty", () => {
    expect(pool([], 7, "max")).toEqual([]);
  });
});
