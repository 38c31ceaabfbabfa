import { hostLayer } from "../host-layer.js";
import type { KvLayer } from "../kv-layer.js";
import type { KvArray, LayerCache } from "../layer-cache.js";

/**
 * One layer's live entries, head after head, without the slab's free slots: what a snapshot keeps
 * of a LayerCache. `headCapacities` is the room each head had, so the restored slab has the same
 * layout and the step graph sees exactly the slots it saw before.
 */
export interface LayerEntries {
  lengths: Int32Array;
  headCapacities: Int32Array;
  /** [sum of lengths, headSize] in the KV dtype (Float32Array, or Uint16Array of float16 bits). */
  keys: KvArray;
  values: KvArray;
  /** Accumulated attention of each entry (H2O's score). */
  mass: Float32Array;
  /** Original position of each entry. */
  positions: Int32Array;
}

function snapshotted(layer: KvLayer): LayerCache {
  return hostLayer(layer, "snapshots of device-resident caches (--execution-provider webgpu) are not supported yet: keys and values live on the device");
}

function packed(store: KvArray, rows: number, headSize: number): KvArray {
  return store instanceof Uint16Array ? new Uint16Array(rows * headSize) : new Float32Array(rows * headSize);
}

/** Copies the live entries of `layer` out, head after head. */
export function packLayer(kvLayer: KvLayer): LayerEntries {
  const layer = snapshotted(kvLayer);
  const { headSize } = layer.shape;
  const rows = layer.entries;
  const out: LayerEntries = {
    lengths: Int32Array.from(layer.lengths),
    headCapacities: layer.room(),
    keys: packed(layer.keyStore, rows, headSize),
    values: packed(layer.valueStore, rows, headSize),
    mass: new Float32Array(rows),
    positions: new Int32Array(rows),
  };
  let at = 0;
  layer.lengths.forEach((n, h) => {
    const from = layer.offsets[h];
    out.keys.set(layer.keyStore.subarray(from * headSize, (from + n) * headSize), at * headSize);
    out.values.set(layer.valueStore.subarray(from * headSize, (from + n) * headSize), at * headSize);
    out.mass.set(layer.mass.subarray(from, from + n), at);
    out.positions.set(layer.positions.subarray(from, from + n), at);
    at += n;
  });
  return out;
}

/** Fills `layer` (an empty cache of the same shape) with `entries`, in the room each head had. */
export function unpackLayer(kvLayer: KvLayer, entries: LayerEntries): void {
  const layer = snapshotted(kvLayer);
  if (layer.entries !== 0) throw new Error("unpackLayer needs an empty layer cache");
  const { headSize } = layer.shape;
  layer.restoreRoom(entries.headCapacities);
  let at = 0;
  entries.lengths.forEach((n, h) => {
    const to = layer.offsets[h];
    layer.keyStore.set(entries.keys.subarray(at * headSize, (at + n) * headSize), to * headSize);
    layer.valueStore.set(entries.values.subarray(at * headSize, (at + n) * headSize), to * headSize);
    layer.mass.set(entries.mass.subarray(at, at + n), to);
    layer.positions.set(entries.positions.subarray(at, at + n), to);
    layer.mask.fill(0, to, to + n);
    layer.lengths[h] = n;
    at += n;
  });
  layer.revision++; // copies of the old (empty) contents, a decode batch's, are stale
}
