import type ort from "onnxruntime-node";

/**
 * Keys and values of one layer of one sequence on the device, [1, Hkv, 1, capacity, d] each, never
 * changed once made (a step or a relayout makes new ones). Caches share one after a Fork; the
 * device memory is freed when the last holder lets go.
 */
export class DeviceSlab {
  private holders = 1;

  constructor(
    readonly key: ort.Tensor,
    readonly value: ort.Tensor,
    readonly capacity: number,
  ) {}

  share(): DeviceSlab {
    this.holders++;
    return this;
  }

  drop(): void {
    if (--this.holders > 0) return;
    this.key.dispose();
    this.value.dispose();
  }
}

/** What a device-resident cache needs from the device: rearranging slabs, reading rows back, and taking a snapshot's rows in. */
export interface SlabDevice {
  /**
   * A new slab whose row i (flat over [Hkv, capacity]) is row `slots[i]` of `source`; all zeros when
   * `source` is null (a new cache).
   */
  gather(source: DeviceSlab | null, slots: Int32Array, capacity: number): Promise<DeviceSlab>;
  /** Row i of the result is key row `slots[i]` of `source`, on the host: [Hkv, capacity, d]. */
  readKeys(source: DeviceSlab, slots: Int32Array): Promise<Float32Array>;
  /** As readKeys, for the values (a snapshot reads both). */
  readValues(source: DeviceSlab, slots: Int32Array): Promise<Float32Array>;
  /**
   * A slab holding `keys` and `values` ([Hkv, capacity, d] on the host) as they are; the step that
   * next reads it takes them to the device, so a restore needs no device round trip of its own.
   */
  upload(keys: Float32Array, values: Float32Array, capacity: number): DeviceSlab;
}
