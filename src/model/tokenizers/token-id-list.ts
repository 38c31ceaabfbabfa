/**
 * A growing list of token ids in an Int32Array, handed out as a plain array
 * once complete. A JS array grown by `push` to hundreds of thousands of ids
 * is copied by every young-generation GC it survives (tens of milliseconds a
 * megabyte of text, growing faster than the text); a typed buffer is not, and
 * an array allocated at its final length is filled in one pass.
 */
export class TokenIdList {
  private ids: Int32Array;
  private count = 0;

  constructor(capacity: number) {
    this.ids = new Int32Array(Math.max(16, capacity));
  }

  append(ids: ArrayLike<number>): void {
    if (this.count + ids.length > this.ids.length) {
      const grown = new Int32Array(Math.max(2 * this.ids.length, this.count + ids.length));
      grown.set(this.ids.subarray(0, this.count));
      this.ids = grown;
    }
    this.ids.set(ids, this.count);
    this.count += ids.length;
  }

  toArray(): number[] {
    const array = new Array<number>(this.count);
    for (let i = 0; i < this.count; i++) array[i] = this.ids[i];
    return array;
  }
}
