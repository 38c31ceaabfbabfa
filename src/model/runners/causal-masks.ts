import ort from "onnxruntime-node";

/** The step graph's additive causal mask [S, S] among a step's new tokens, kept per size. */
export class CausalMasks {
  private readonly masks = new Map<number, ort.Tensor>();

  of(count: number): ort.Tensor {
    let mask = this.masks.get(count);
    if (!mask) {
      const values = new Float32Array(count * count);
      for (let r = 0; r < count; r++) values.fill(-Infinity, r * count + r + 1, (r + 1) * count);
      mask = new ort.Tensor("float32", values, [count, count]);
      // Few sizes recur (1 for decode, the chunk size for prefill); keep the cache small.
      if (this.masks.size >= 8) this.masks.clear();
      this.masks.set(count, mask);
    }
    return mask;
  }
}
