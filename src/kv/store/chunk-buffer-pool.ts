/**
 * Chunk-sized buffers reused from one load to the next. In a VM, memory touched for the first time
 * costs a page fault per page, and a multi-MiB Buffer is fresh mmap'd memory every time: copying a
 * snapshot into new memory took longer than receiving it (docs/kv-store.md, "Benchmarks"). Loads read
 * chunks into them. A buffer comes back only once nothing reads the arrays a load lent from it any
 * more (LoadedSnapshot.done), so nothing in use is overwritten.
 * Holds at most `limit` buffers (outside --kv-budget).
 */
export class ChunkBufferPool {
  private readonly free: Buffer[] = [];

  constructor(
    readonly chunkBytes: number,
    private readonly limit: number,
  ) {}

  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafeSlow(this.chunkBytes);
  }

  give(buffers: readonly Buffer[]): void {
    // Whole buffers back (a last chunk is a shorter view of one).
    for (const { buffer } of buffers) if (this.free.length < this.limit && buffer.byteLength === this.chunkBytes) this.free.push(Buffer.from(buffer, 0, this.chunkBytes));
  }
}
