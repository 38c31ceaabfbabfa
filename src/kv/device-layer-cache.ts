import { DeviceSlab, type SlabDevice } from "./device-slab.js";
import type { KvLayer } from "./kv-layer.js";
import { capacityFor, LayerCache, type KvArray, type LayerCheckpoint } from "./layer-cache.js";
import type { SlabPool } from "./slab-pool.js";

/**
 * One layer of one sequence whose keys and values live on the device (WebGPU). It composes a host
 * index, what the engine and the policies read per entry (lengths, mask, accumulated attention,
 * positions: a LayerCache whose key and value rows are zero wide, so it holds only those), and
 * keeps keys and values on the device in the same slot layout.
 *
 * Host-side layout changes (growth, eviction, rollback) are recorded as `sourceRows`, the device row
 * each slot's entry is in now, and carried out on the device by one gather before the next step
 * (`slabForStep`), so no key or value crosses to the host. A policy that scores keys gets them
 * read back once per eviction (`loadKeys`, before planning: Policy.readsKeys). A snapshot reads keys
 * and values back (`loadEntries`) and a restore hands them over as host tensors (`takeEntries`).
 */
export class DeviceLayerCache implements KvLayer {
  readonly kvDtype = "float32";
  /** The per-entry index on the host; every head keeps the same room, as the device slab [Hkv, capacity, d] does. */
  private readonly index: LayerCache;
  private deviceSlab: DeviceSlab | null = null;
  /** Per slot [Hkv, capacity]: the row of `slab` (flat over its [Hkv, capacity]) holding the entry, -1 for none. */
  private sourceRows = new Int32Array();
  /** Keys read back for the policies, valid until the next change. */
  private hostKeys: Float32Array | null = null;
  /** Values read back for a snapshot, valid until the next change, as `hostKeys`. */
  private hostValues: Float32Array | null = null;
  /** Device bytes counted against the pool. */
  private deviceBytesHeld = 0;

  constructor(
    private readonly devicePool: SlabPool,
    readonly kvHeads: number,
    readonly headSize: number,
    private readonly device: SlabDevice,
  ) {
    this.index = new LayerCache(devicePool, { kvHeads, headSize: 0 }, true);
  }

  get lengths(): Int32Array {
    return this.index.lengths;
  }

  get offsets(): Int32Array {
    return this.index.offsets;
  }

  get capacity(): number {
    return this.index.capacity;
  }

  get mask(): Float32Array {
    return this.index.mask;
  }

  get mass(): Float32Array {
    return this.index.mass;
  }

  get positions(): Int32Array {
    return this.index.positions;
  }

  get revision(): number {
    return this.index.revision;
  }

  get entries(): number {
    return this.index.entries;
  }

  get maxLength(): number {
    return this.index.maxLength;
  }

  headPositions(): number[][] {
    return this.index.headPositions();
  }

  checkpoint(): LayerCheckpoint {
    return this.index.checkpoint();
  }

  room(): Int32Array {
    return this.index.room();
  }

  /** Keys and values on the device (float32) for `capacity` slots per head. */
  deviceBytesFor(capacity: number): number {
    return 2 * this.kvHeads * capacity * this.headSize * Float32Array.BYTES_PER_ELEMENT;
  }

  get deviceBytes(): number {
    return this.deviceBytesHeld;
  }

  get bytes(): number {
    return this.index.bytes + this.deviceBytesHeld;
  }

  get entryBytes(): number {
    // The host index's part (mask, attention mass, position) plus each entry's key and value on the device.
    return this.index.entryBytes + this.entries * 2 * this.headSize * Float32Array.BYTES_PER_ELEMENT;
  }

  bytesWithRoomFor(extra: number): number {
    return this.index.bytesWithRoomFor(extra) + this.deviceBytesFor(capacityFor(this.capacity, this.maxLength + extra));
  }

  bytesHolding(lengths: ArrayLike<number>): number {
    return this.index.bytesHolding(lengths) + this.deviceBytesFor(capacityFor(0, Math.max(0, ...Array.from(lengths))));
  }

  get keysOnHost(): boolean {
    return this.hostKeys !== null;
  }

  get keys(): Float32Array {
    if (!this.hostKeys) throw new Error("the keys of this cache are on the device: loadKeys() reads them back before a policy that scores them plans");
    return this.hostKeys;
  }

  reserve(extra: number): void {
    this.keepingPrefix(() => this.index.reserve(extra));
  }

  /** Every head has the same room already: nothing to give back. */
  settle(): void {
    this.index.settle();
  }

  /** Every head takes the largest room given: the device slab is [Hkv, capacity, d] (a host snapshot's heads may differ). */
  restoreRoom(headCapacities: Int32Array): void {
    const room = new Int32Array(this.kvHeads).fill(Math.max(0, ...Array.from(headCapacities)));
    this.keepingPrefix(() => this.index.restoreRoom(room));
  }

  rollback(checkpoint: LayerCheckpoint): void {
    this.keepingPrefix(() => this.index.rollback(checkpoint));
  }

  retain(keep: readonly Int32Array[]): void {
    const before = { capacity: this.capacity, rows: this.sourceRows };
    this.index.retain(keep);
    this.sourceRows = new Int32Array(this.kvHeads * this.capacity).fill(-1);
    keep.forEach((slots, h) => slots.forEach((slot, i) => (this.sourceRows[h * this.capacity + i] = before.rows[h * before.capacity + slot])));
    this.changed();
  }

  /** Takes a step's positions and attention; its keys and values went into the device slab (`adopt`), so `keys` and `values` are empty. */
  append(keys: KvArray, values: KvArray, offset: number, count: number, firstPosition: number, colsum?: Float32Array, colsumOffset?: number, colsumPastSlots?: number): void {
    this.index.append(keys, values, offset, count, firstPosition, colsum, colsumOffset, colsumPastSlots);
    this.hostKeys = null;
    this.hostValues = null;
  }

  copyFrom(source: KvLayer): void {
    if (!(source instanceof DeviceLayerCache)) throw new Error("a device-resident cache copies only another one");
    this.index.copyFrom(source.index);
    this.deviceSlab?.drop();
    this.deviceSlab = source.deviceSlab?.share() ?? null;
    this.sourceRows = Int32Array.from(source.sourceRows);
    this.changed();
  }

  release(): void {
    this.index.release();
    this.deviceSlab?.drop();
    this.deviceSlab = null;
    this.sourceRows = new Int32Array();
    this.changed();
  }

  /**
   * The slab laid out as the host slots are (head h's entries in its first lengths[h] slots, room
   * after), made by one gather on the device if the layout changed since the last step.
   */
  async slabForStep(): Promise<DeviceSlab> {
    if (this.deviceSlab && this.deviceSlab.capacity === this.capacity && this.inPlace()) return this.deviceSlab;
    const gathered = await this.device.gather(this.deviceSlab, this.gatherRows(), this.capacity);
    this.adopt(gathered, 0);
    return gathered;
  }

  /** Takes a step's output slab, which holds this layer's entries and `appended` new rows per head, in place. */
  adopt(slab: DeviceSlab, appended: number): void {
    this.deviceSlab?.drop();
    this.deviceSlab = slab;
    this.sourceRows = new Int32Array(this.kvHeads * this.capacity).fill(-1);
    for (let h = 0; h < this.kvHeads; h++) {
      for (let i = 0; i < this.lengths[h] + appended; i++) this.sourceRows[h * this.capacity + i] = h * this.capacity + i;
    }
    this.hostKeys = null;
    this.hostValues = null;
  }

  /** Reads the keys back to the host, for policies that score them (until the next change). */
  async loadKeys(): Promise<void> {
    if (this.hostKeys) return;
    this.hostKeys = this.deviceSlab ? await this.device.readKeys(this.deviceSlab, this.gatherRows()) : new Float32Array(this.kvHeads * this.capacity * this.headSize);
  }

  /** Reads keys and values back to the host, for a snapshot (until the next change). */
  async loadEntries(): Promise<void> {
    await this.loadKeys();
    if (this.hostValues) return;
    this.hostValues = this.deviceSlab ? await this.device.readValues(this.deviceSlab, this.gatherRows()) : new Float32Array(this.kvHeads * this.capacity * this.headSize);
  }

  /** Drops the keys and values read back (they are read again when needed). */
  dropReadBack(): void {
    this.hostKeys = null;
    this.hostValues = null;
  }

  /** Keys and values by slot, [Hkv * capacity, d], as `loadEntries` read them back. */
  get entriesOnHost(): { keys: Float32Array; values: Float32Array } {
    if (!this.hostKeys || !this.hostValues) throw new Error("the keys and values of this cache are on the device: loadEntries() reads them back before a snapshot");
    return { keys: this.hostKeys, values: this.hostValues };
  }

  /** Takes a snapshot's keys and values by slot, [Hkv * capacity, d], for the entries the index holds now. */
  takeEntries(keys: Float32Array, values: Float32Array): void {
    this.adopt(this.device.upload(keys, values, this.capacity), 0);
  }

  private gatherRows(): Int32Array {
    // Empty slots take row 0: they are masked, any finite row will do.
    return this.sourceRows.map((row) => Math.max(row, 0));
  }

  private inPlace(): boolean {
    return this.sourceRows.every((row, slot) => row < 0 || row === slot);
  }

  /** Runs a host change that keeps each head's first entries where they are (capacity may change). */
  private keepingPrefix(change: () => void): void {
    const before = { capacity: this.capacity, rows: this.sourceRows };
    change();
    if (before.capacity !== this.capacity || this.sourceRows.length !== this.kvHeads * this.capacity) {
      this.sourceRows = new Int32Array(this.kvHeads * this.capacity).fill(-1);
      for (let h = 0; h < this.kvHeads; h++) {
        for (let i = 0; i < this.lengths[h]; i++) this.sourceRows[h * this.capacity + i] = before.rows[h * before.capacity + i] ?? -1;
      }
    } else {
      for (let h = 0; h < this.kvHeads; h++) this.sourceRows.fill(-1, h * this.capacity + this.lengths[h], (h + 1) * this.capacity);
    }
    this.changed();
  }

  /** After any change: keys and values read back are stale, and the pool counts the device bytes the capacity needs. */
  private changed(): void {
    this.hostKeys = null;
    this.hostValues = null;
    const bytes = this.deviceBytesFor(this.capacity);
    this.devicePool.adjustDeviceBytes(bytes - this.deviceBytesHeld);
    this.deviceBytesHeld = bytes;
  }
}
