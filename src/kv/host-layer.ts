import type { KvLayer } from "./kv-layer.js";
import { LayerCache } from "./layer-cache.js";

/**
 * The layer as a host slab, for code that reads its keys and values on the host (the CPU step,
 * the decode batch arena, snapshots); a device-resident layer is refused with `refusal`.
 */
export function hostLayer(layer: KvLayer, refusal: string): LayerCache {
  if (!(layer instanceof LayerCache)) throw new Error(refusal);
  return layer;
}
