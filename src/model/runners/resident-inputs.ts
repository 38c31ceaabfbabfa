/**
 * Copies of large step inputs kept on a session thread between runs, so that
 * a long sequence's step sends only the cache entries appended since its last
 * step instead of its whole cache (docs/worker-threads.md): at 8192 cached
 * tokens, copying and transferring 11 MB per step, and collecting the buffers
 * after, took more of the event loop than anything else a long stream did.
 */

/** What lets an input be kept on a thread: it only gains entries at the ends of its rows while `revision` stays, or has rows rewritten as `rowRevisions` says. */
export interface Appendable {
  /** Counts changes other than appends and rewritten rows; a new store (another typed array) is a change too. */
  revision: number;
  /** Entries held per row. */
  lengths: Int32Array;
  /** Per row, counts rewrites of that row alone (a batch slot another sequence took): such a row is sent whole, not the whole store. */
  rowRevisions?: Int32Array;
  /** Slots per row: row r starts at entry r * rowSlots. */
  rowSlots: number;
  /** Values per entry (head size for keys and values, 1 for a mask). */
  width: number;
  /**
   * The store this one was laid out from (a batch arena's resize): each row kept its first slots, as many
   * as fit, and the rest is `pad`. A thread's copy of that store is laid out the same way, not sent again.
   */
  relaidFrom?: { store: object; pad: number };
}

const NO_ROW_REVISIONS = new Int32Array();

/** Inputs smaller than this are copied whole each run by default: cheaper than keeping them, and the run can take any thread. */
export const RESIDENT_MIN_BYTES = 256 * 1024;

/**
 * How an input reaches its thread: whole (then kept there as `id`), or as the ranges appended to copy `id`
 * (after, with `relaid`, the thread lays copy `from` out anew as copy `id`, `length` values in rows of
 * `rowSlots` slots of `width` values, each keeping its first slots, the rest `pad`). The ranges are plain
 * arrays: posting a typed array clones its buffer too, which tripled the cost of posting a long
 * sequence's step (15 feeds, each with two).
 */
export type ResidentFeed =
  | { id: number; whole: true }
  | { id: number; whole: false; relaid?: Relaid; starts: number[]; counts: number[]; values: number };

export interface Relaid {
  from: number;
  fromRowSlots: number;
  rowSlots: number;
  width: number;
  length: number;
  pad: number;
}

interface Record<Thread> {
  id: number;
  thread: Thread;
  revision: number;
  lengths: Int32Array;
  rowRevisions: Int32Array;
  rowSlots: number;
  bytes: number;
}

/**
 * What each session thread holds, as the main thread last sent it. An input
 * kept on a thread ties its runs to that thread (its home), chosen when it is
 * first sent: the thread that holds the fewest bytes. A copy goes when its
 * store is collected here (FinalizationRegistry), when its thread is lost, or
 * after a failed run.
 */
export class ResidentInputs<Thread extends object> {
  private readonly records = new WeakMap<object, Record<Thread>>();
  private readonly byId = new Map<number, { record: Record<Thread>; store: WeakRef<object> }>();
  private nextId = 1;
  private readonly collected = new FinalizationRegistry<number>((id) => this.forgetId(id, true));

  /** `dropped` is told the copies a thread should let go of (their stores are gone here); inputs of `minBytes` or more are kept. */
  constructor(
    private readonly dropped: (thread: Thread, ids: number[]) => void,
    private readonly minBytes = RESIDENT_MIN_BYTES,
  ) {}

  /** Whether `store` is worth keeping on a thread. */
  keeps(store: ArrayBufferView, appendable: Appendable | undefined): appendable is Appendable {
    return appendable !== undefined && store.byteLength >= this.minBytes;
  }

  /** The thread that holds a current copy of any of `stores` (or of what it was laid out from), if one does. */
  homeOf(stores: readonly { store: object; appendable: Appendable }[]): Thread | undefined {
    for (const { store, appendable } of stores) {
      const record = this.records.get(store) ?? (appendable.relaidFrom && this.records.get(appendable.relaidFrom.store));
      if (record && record.revision === appendable.revision) return record.thread;
    }
    return undefined;
  }

  /** The bytes of copies `thread` holds. */
  bytesOn(thread: Thread): number {
    let bytes = 0;
    for (const { record } of this.byId.values()) if (record.thread === thread) bytes += record.bytes;
    return bytes;
  }

  /**
   * How `store` goes to `thread` for a run asked for now: the entries appended since the copy there and
   * the rows rewritten since (packed into `pack`'s array), after laying out anew the copy of the store it
   * was laid out from, or whole. Records that the thread will hold it as it is now.
   */
  send<T extends ArrayBufferView>(store: T, appendable: Appendable, thread: Thread, pack: (values: number) => T): { feed: ResidentFeed; data: T } | { feed: ResidentFeed; data: null } {
    const { rowSlots, width, lengths, rowRevisions = NO_ROW_REVISIONS, relaidFrom } = appendable;
    let record = this.records.get(store);
    let relaid: Relaid | undefined;
    const previous = !record && relaidFrom ? this.records.get(relaidFrom.store) : undefined;
    if (relaidFrom && previous && previous.thread === thread && previous.revision === appendable.revision) {
      // The thread lets the old copy go as it lays it out anew.
      this.forgetId(previous.id, false);
      const rows = lengths.length;
      record = this.remember(store, thread, appendable.revision, rowSlots, {
        lengths: Int32Array.from({ length: rows }, (_, row) => Math.min(previous.lengths[row] ?? 0, rowSlots)),
        rowRevisions: Int32Array.from({ length: rows }, (_, row) => previous.rowRevisions[row] ?? 0),
      });
      const length = store.byteLength / (store as unknown as Float32Array).BYTES_PER_ELEMENT;
      relaid = { from: previous.id, fromRowSlots: previous.rowSlots, rowSlots, width, length, pad: relaidFrom.pad };
    }
    if (!record || record.thread !== thread || record.revision !== appendable.revision) {
      // The thread's older copy is stale: it goes before this run (messages arrive in order).
      if (record) this.forgetId(record.id, true);
      const fresh = this.remember(store, thread, appendable.revision, rowSlots, { lengths: Int32Array.from(lengths), rowRevisions: Int32Array.from(rowRevisions) });
      return { feed: { id: fresh.id, whole: true }, data: null };
    }
    const starts: number[] = [];
    const counts: number[] = [];
    let values = 0;
    lengths.forEach((n, row) => {
      // A rewritten row (or one that lost entries) goes whole: its mask past the entries changed too.
      const rewritten = n < record.lengths[row] || (rowRevisions[row] ?? 0) !== (record.rowRevisions[row] ?? 0);
      const from = rewritten ? 0 : record.lengths[row];
      const to = rewritten ? rowSlots : n;
      if (to === from) return;
      starts.push((row * rowSlots + from) * width);
      counts.push((to - from) * width);
      values += (to - from) * width;
    });
    const data = pack(values);
    const source = store as unknown as Float32Array;
    let at = 0;
    starts.forEach((start, i) => {
      (data as unknown as Float32Array).set(source.subarray(start, start + counts[i]), at);
      at += counts[i];
    });
    record.lengths.set(lengths);
    record.rowRevisions.set(rowRevisions);
    return { feed: { id: record.id, whole: false, relaid, starts, counts, values }, data };
  }

  /** Records that `thread` holds a copy of `store` as `rows` say, under a new id. */
  private remember(store: ArrayBufferView, thread: Thread, revision: number, rowSlots: number, rows: { lengths: Int32Array; rowRevisions: Int32Array }): Record<Thread> {
    const record: Record<Thread> = { id: this.nextId++, thread, revision, ...rows, rowSlots, bytes: store.byteLength };
    this.records.set(store, record);
    this.byId.set(record.id, { record, store: new WeakRef(store) });
    this.collected.register(store, record.id, record);
    return record;
  }

  /** A run with these copies failed: the thread drops them (it does so itself), and they go whole next time. */
  failed(ids: readonly number[]): void {
    for (const id of ids) this.forgetId(id, false);
  }

  /** `thread` is gone, and its copies with it. */
  lost(thread: Thread): void {
    for (const [id, { record }] of this.byId) if (record.thread === thread) this.forgetId(id, false);
  }

  private forgetId(id: number, tellThread: boolean): void {
    const entry = this.byId.get(id);
    if (!entry) return;
    this.byId.delete(id);
    this.collected.unregister(entry.record);
    const store = entry.store.deref();
    if (store && this.records.get(store) === entry.record) this.records.delete(store);
    if (tellThread) this.dropped(entry.record.thread, [id]);
  }
}
