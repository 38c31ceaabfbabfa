import type { KvResident } from "../../../src/kv/kv-resident.js";
import type { SlabPool } from "../../../src/kv/slab-pool.js";

/**
 * A resident that holds real slabs of a SlabPool, one per grant, so the memory manager is tested
 * against exact pool accounting without a model.
 */
export class SlabResident implements KvResident {
  busy = false;
  private readonly slabs: Float32Array[] = [];

  constructor(
    readonly name: string,
    readonly tenant: string,
    private readonly pool: SlabPool,
    public lastUsed: number,
  ) {}

  get bytes(): number {
    return this.slabs.reduce((sum, slab) => sum + slab.byteLength, 0);
  }

  /** Takes `bytes` more (a multiple of 4); returns how to give them back. */
  grow(bytes: number): () => void {
    const slab = this.pool.acquire(bytes / Float32Array.BYTES_PER_ELEMENT);
    this.slabs.push(slab);
    return () => this.drop(slab);
  }

  /** Gives back slabs, newest first, until at most `bytes` are held. */
  shrinkTo(bytes: number): void {
    while (this.bytes > bytes) this.drop(this.slabs[this.slabs.length - 1]);
  }

  private drop(slab: Float32Array): void {
    const index = this.slabs.indexOf(slab);
    if (index < 0) return;
    this.slabs.splice(index, 1);
    this.pool.release(slab);
  }
}
