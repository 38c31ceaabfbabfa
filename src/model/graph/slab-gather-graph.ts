import type { KvDtype } from "../../kv/layer-cache.js";
import { OnnxGraph } from "./onnx-graph.js";

/** Names of the slab-gather graph's inputs and output. */
export const SLAB_GATHER_IO = { slab: "slab", slots: "slots", gathered: "gathered" } as const;

/**
 * A graph that rearranges a device-resident cache slab [1, Hkv, 1, C, d]: output row i is input
 * row slots[i] (flat over Hkv * C), reshaped to [1, Hkv, 1, N / Hkv, d]. It grows, shrinks and
 * compacts (eviction) a slab without the keys and values leaving the device, and with its output on
 * the host it reads keys back for the policies that score them.
 */
export function buildSlabGatherGraph(kvHeads: number, headSize: number, kvDtype: KvDtype): Uint8Array {
  const g = new OnnxGraph();
  const slab = g.input(SLAB_GATHER_IO.slab, kvDtype, [1, kvHeads, 1, "C", headSize]);
  const slots = g.input(SLAB_GATHER_IO.slots, "int32", ["N"]);
  const rows = g.op("Reshape", [slab, g.ints("rows_shape", [-1, headSize])]);
  const gathered = g.op("Gather", [rows, slots], { axis: 0 });
  const shaped = g.op("Reshape", [gathered, g.ints("slab_shape", [1, kvHeads, 1, -1, headSize])]);
  g.output(shaped, SLAB_GATHER_IO.gathered, kvDtype, [1, kvHeads, 1, "M", headSize]);
  return g.encode("slab-gather", { "": 23 });
}
