import { DeviceLayerCache } from "../device-layer-cache.js";
import type { KvLayer } from "../kv-layer.js";
import { LayerCache, type KvArray } from "../layer-cache.js";

/**
 * One layer's live entries, head after head, without the slab's free slots: what a snapshot keeps
 * of a layer, host slab or device-resident (its keys and values read back first: loadEntries), in
 * one format, so a snapshot taken on one path restores on the other. `headCapacities` is the room
 * each head had, so the restored slab has the same layout and the step graph sees exactly the slots
 * it saw before.
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

/** Keys and values by slot, [slots, headSize], where a snapshot reads and writes them on the host. */
interface SlotRows {
  keys: KvArray;
  values: KvArray;
  headSize: number;
}

function slotRows(layer: KvLayer): SlotRows {
  if (layer instanceof LayerCache) return { keys: layer.keyStore, values: layer.valueStore, headSize: layer.shape.headSize };
  if (layer instanceof DeviceLayerCache) return { ...layer.entriesOnHost, headSize: layer.headSize };
  throw new Error("a snapshot reads host slabs and device-resident layers only");
}

function packed(store: KvArray, rows: number, headSize: number): KvArray {
  return store instanceof Uint16Array ? new Uint16Array(rows * headSize) : new Float32Array(rows * headSize);
}

/** Copies the live entries of `layer` out, head after head. */
export function packLayer(layer: KvLayer): LayerEntries {
  const { keys, values, headSize } = slotRows(layer);
  const rows = layer.entries;
  const out: LayerEntries = {
    lengths: Int32Array.from(layer.lengths),
    headCapacities: layer.room(),
    keys: packed(keys, rows, headSize),
    values: packed(values, rows, headSize),
    mass: new Float32Array(rows),
    positions: new Int32Array(rows),
  };
  let at = 0;
  layer.lengths.forEach((n, h) => {
    const from = layer.offsets[h];
    out.keys.set(keys.subarray(from * headSize, (from + n) * headSize), at * headSize);
    out.values.set(values.subarray(from * headSize, (from + n) * headSize), at * headSize);
    out.mass.set(layer.mass.subarray(from, from + n), at);
    out.positions.set(layer.positions.subarray(from, from + n), at);
    at += n;
  });
  return out;
}

/** Fills `layer` (an empty cache of the same shape) with `entries`, in the room each head had. */
export function unpackLayer(layer: KvLayer, entries: LayerEntries): void {
  if (layer.entries !== 0) throw new Error("unpackLayer needs an empty layer cache");
  layer.restoreRoom(entries.headCapacities);
  // A device layer's keys and values are gathered here by slot, then handed over whole (takeEntries).
  const device = layer instanceof DeviceLayerCache ? layer : null;
  const slots = device ? device.kvHeads * device.capacity : 0;
  const { keys, values, headSize } = device
    ? { keys: new Float32Array(slots * device.headSize), values: new Float32Array(slots * device.headSize), headSize: device.headSize }
    : slotRows(layer);
  let at = 0;
  entries.lengths.forEach((n, h) => {
    const to = layer.offsets[h];
    keys.set(entries.keys.subarray(at * headSize, (at + n) * headSize), to * headSize);
    values.set(entries.values.subarray(at * headSize, (at + n) * headSize), to * headSize);
    layer.mass.set(entries.mass.subarray(at, at + n), to);
    layer.positions.set(entries.positions.subarray(at, at + n), to);
    layer.mask.fill(0, to, to + n);
    layer.lengths[h] = n;
    at += n;
  });
  if (device) device.takeEntries(keys as Float32Array, values as Float32Array);
  else (layer as LayerCache).revision++; // copies of the old (empty) contents, a decode batch's, are stale
}
