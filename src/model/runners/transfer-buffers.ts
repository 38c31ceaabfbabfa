/**
 * ArrayBuffers kept for reuse by size class (powers of two), for step inputs
 * that go to a session thread and come back with its reply. Fresh memory is
 * dear here: copying 15 MB into a new buffer took 120-180 ms on the 2-core
 * machine (page faults), into a reused one about 1 ms (docs/worker-threads.md).
 * What it keeps is what the runs in flight at once needed at most.
 */
export class TransferBuffers {
  private readonly free = new Map<number, ArrayBuffer[]>();

  /** A buffer of at least `byteLength` bytes, reused when one is free. */
  take(byteLength: number): ArrayBuffer {
    const size = sizeClass(byteLength);
    return this.free.get(size)?.pop() ?? new ArrayBuffer(size);
  }

  /** Keeps `buffer` (one `take` gave) for a later `take`. */
  give(buffer: ArrayBuffer): void {
    const list = this.free.get(buffer.byteLength) ?? [];
    list.push(buffer);
    this.free.set(buffer.byteLength, list);
  }

  /** Drops every kept buffer. */
  clear(): void {
    this.free.clear();
  }
}

/** The size class of `byteLength`: the next power of two, at least 64 bytes. */
function sizeClass(byteLength: number): number {
  return Math.max(64, 2 ** Math.ceil(Math.log2(Math.max(1, byteLength))));
}
