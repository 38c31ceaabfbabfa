// @ts-check
// Plain JavaScript, so that the session thread (onnx-session-worker.js, itself plain JS) keeps its lent output buffers here too.

/**
 * ArrayBuffers kept for reuse by size class (powers of two): step inputs that
 * go to a session thread and come back with its reply, and on the thread,
 * output buffers lent to carry its outputs back. Fresh memory is dear here:
 * copying 15 MB into a new buffer took 120-180 ms on the 2-core machine (page
 * faults), into a reused one about 1 ms (docs/worker-threads.md). What it keeps
 * is what the runs in flight at once needed at most, up to `maxBytes`.
 */
export class TransferBuffers {
  /** @type {Map<number, ArrayBuffer[]>} */
  #free = new Map();
  #bytes = 0;

  /** @param {number} [maxBytes] the most it keeps: a buffer given beyond that is dropped */
  constructor(maxBytes = Infinity) {
    this.maxBytes = maxBytes;
  }

  /**
   * A buffer of at least `byteLength` bytes, reused when one is free.
   * @param {number} byteLength
   * @returns {ArrayBuffer}
   */
  take(byteLength) {
    const size = sizeClass(byteLength);
    const buffer = this.#free.get(size)?.pop();
    if (!buffer) return new ArrayBuffer(size);
    this.#bytes -= size;
    return buffer;
  }

  /**
   * Keeps `buffer` (one `take` gave, here or on the other side of a transfer) for a later `take`.
   * @param {ArrayBuffer} buffer
   */
  give(buffer) {
    if (this.#bytes + buffer.byteLength > this.maxBytes) return;
    this.#bytes += buffer.byteLength;
    const list = this.#free.get(buffer.byteLength);
    if (list) list.push(buffer);
    else this.#free.set(buffer.byteLength, [buffer]);
  }

  /** Drops every kept buffer. */
  clear() {
    this.#free.clear();
    this.#bytes = 0;
  }
}

/**
 * The size class of `byteLength`: the next power of two, at least 64 bytes.
 * @param {number} byteLength
 */
function sizeClass(byteLength) {
  return Math.max(64, 2 ** Math.ceil(Math.log2(Math.max(1, byteLength))));
}
