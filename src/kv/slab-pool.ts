/** Thrown when an allocation would exceed the KV budget. */
export class KvBudgetExceeded extends Error {
  constructor(
    readonly requestedBytes: number,
    readonly freeBytes: number,
  ) {
    super(`KV budget exhausted: ${requestedBytes} bytes requested, ${freeBytes} bytes free`);
  }
}

/**
 * Owns every byte of KV memory. Slabs (Float32Arrays) are handed to sequence
 * caches and come back on release; released slabs are kept in free lists by
 * size for reuse, so steady traffic stops allocating. Held plus pooled bytes
 * never exceed the budget: pooled slabs are dropped to make room.
 */
export class SlabPool {
  private usedBytes = 0;
  private pooledBytes = 0;
  private deviceBytesHeld = 0;
  private readonly free = new Map<number, Float32Array[]>();
  private readonly freedListeners = new Set<() => void>();

  constructor(readonly budgetBytes: number) {}

  /** Calls `listener` whenever held memory is given back (calls waiting for room retry then); returns how to stop. */
  onFreed(listener: () => void): () => void {
    this.freedListeners.add(listener);
    return () => this.freedListeners.delete(listener);
  }

  get used(): number {
    return this.usedBytes;
  }

  get pooled(): number {
    return this.pooledBytes;
  }

  /** Of the bytes in use, those on the device (a device-resident cache's keys and values). */
  get deviceBytes(): number {
    return this.deviceBytesHeld;
  }

  /**
   * Counts device memory a cache took (positive) or gave back (negative) as in use. Callers check
   * room first (assertRoom, as the engine admits growth); device memory is not pooled.
   */
  adjustDeviceBytes(delta: number): void {
    this.usedBytes += delta;
    this.deviceBytesHeld += delta;
    this.trimPool();
    if (delta < 0) this.freed();
  }

  get available(): number {
    return this.budgetBytes - this.usedBytes;
  }

  /** Throws KvBudgetExceeded unless `bytes` more could be held now. */
  assertRoom(bytes: number, releasingBytes = 0): void {
    if (this.usedBytes - releasingBytes + bytes > this.budgetBytes) {
      throw new KvBudgetExceeded(bytes, this.available + releasingBytes);
    }
  }

  /**
   * A zero-filled slab of `floats` elements, counted against the budget.
   * `releasingBytes`: a slab the caller releases right after, in the same
   * synchronous step (one being replaced), counted as free.
   */
  acquire(floats: number, releasingBytes = 0): Float32Array {
    const bytes = floats * Float32Array.BYTES_PER_ELEMENT;
    this.assertRoom(bytes, releasingBytes);
    const reused = this.free.get(floats)?.pop();
    this.usedBytes += bytes;
    if (reused) {
      this.pooledBytes -= bytes;
      return reused.fill(0);
    }
    this.trimPool();
    return new Float32Array(floats);
  }

  release(slab: Float32Array): void {
    const bytes = slab.byteLength;
    this.usedBytes -= bytes;
    const list = this.free.get(slab.length) ?? [];
    list.push(slab);
    this.free.set(slab.length, list);
    this.pooledBytes += bytes;
    this.trimPool();
    this.freed();
  }

  private freed(): void {
    for (const listener of this.freedListeners) listener();
  }

  /** Drops pooled slabs until held + pooled fits the budget. */
  private trimPool(): void {
    for (const [floats, list] of this.free) {
      while (list.length > 0 && this.usedBytes + this.pooledBytes > this.budgetBytes) {
        list.pop();
        this.pooledBytes -= floats * Float32Array.BYTES_PER_ELEMENT;
      }
      if (list.length === 0) this.free.delete(floats);
    }
  }
}
