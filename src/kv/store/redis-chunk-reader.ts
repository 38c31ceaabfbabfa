import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { ErrorReply } from "redis";
import type { ValueBuffers } from "./kv-store.js";

/** Where one reply goes once parsed. */
interface PendingReply {
  buffers: ValueBuffers;
  resolve(value: Buffer | null): void;
  reject(error: Error): void;
}

/** Node's reads land here, reused for every read of the connection. */
const READ_BUFFER_BYTES = 4 * 2 ** 20;
const CR_LF = 2;

/** One RESP request: an array of bulk strings. */
function command(...words: string[]): Buffer {
  const parts = words.map((word) => Buffer.from(word, "utf8"));
  return Buffer.concat([Buffer.from(`*${parts.length}\r\n`), ...parts.flatMap((part) => [Buffer.from(`$${part.length}\r\n`), part, Buffer.from("\r\n")])]);
}

/**
 * Reads large values (snapshot chunks) from one Redis or Valkey server on a connection of its own,
 * with GET, straight into the caller's reused buffers. node-redis, like Node's default socket, reads
 * a reply in new 64 KiB Buffers and joins them into a new one per value; in a VM where memory touched
 * for the first time costs a page fault per page, that ran at a tenth of redis-benchmark's GET, and no
 * client on npm reads into buffers it is given (docs/kv-store.md, "Benchmarks"). Here Node reads into
 * one buffer (`onread`) and each value is copied once, into the buffer it ends in.
 *
 * It speaks only what it needs of RESP2: AUTH and SELECT as the connection opens, then pipelined GETs
 * (bulk strings, nulls and error replies). Plain TCP only: for TLS and Cluster the store reads through
 * node-redis. Error replies reject as node-redis's ErrorReply, so the store classifies them alike;
 * a connection that fails rejects what is in flight and is opened again by the next read.
 */
export class RedisChunkReader {
  private connection: Promise<Socket> | null = null;
  /** The open connection, once its handshake is done. */
  private socket: Socket | null = null;
  private readonly pending: PendingReply[] = [];
  /** The reply being parsed: its header line so far, then its value and how much of it has arrived. */
  private line = "";
  private value: Buffer | null = null;
  private filled = 0;
  private skip = 0;

  constructor(private readonly url: URL) {}

  /** GETs `keys` in one pipeline: each value in a buffer from `buffers` where one fits, null where a key is missing. */
  async getMany(keys: readonly string[], buffers: ValueBuffers): Promise<(Buffer | null)[]> {
    const socket = await this.connected();
    // Closed since it opened (its 'close' has failed what was pending then): nothing would answer.
    if (socket.destroyed) throw new Error("connection to the store closed");
    const replies = keys.map(() => this.expect(buffers));
    socket.write(Buffer.concat(keys.map((key) => command("GET", key))));
    // Every reply settles before this does: none is still being copied into a buffer the caller reuses.
    const settled = await Promise.allSettled(replies);
    const failed = settled.find((reply) => reply.status === "rejected");
    if (failed) throw failed.reason;
    return settled.map((reply) => (reply as PromiseFulfilledResult<Buffer | null>).value);
  }

  close(): void {
    void this.connection?.then((socket) => socket.destroy(), () => {});
    this.connection = null;
    this.socket = null;
  }

  private connected(): Promise<Socket> {
    this.connection ??= this.open().catch((error: unknown) => {
      this.connection = null;
      throw error;
    });
    return this.connection;
  }

  private async open(): Promise<Socket> {
    const readBuffer = Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);
    const socket = connect({
      host: this.url.hostname.replace(/^\[|\]$/g, ""),
      port: Number(this.url.port || 6379),
      noDelay: true,
      onread: { buffer: readBuffer, callback: (count) => (this.received(readBuffer, count), true) },
    });
    socket.setTimeout(5000, () => socket.destroy(new Error("connection to the store timed out")));
    socket.on("error", () => {}); // 'close' follows, and fails what was in flight
    socket.on("close", () => this.lost(socket));
    await once(socket, "connect");
    socket.setTimeout(0);
    const password = decodeURIComponent(this.url.password);
    const user = decodeURIComponent(this.url.username);
    const db = this.url.pathname.slice(1);
    const handshake: Buffer[] = [];
    if (password) handshake.push(user ? command("AUTH", user, password) : command("AUTH", password));
    if (db && db !== "0") handshake.push(command("SELECT", db));
    const answered = handshake.map(() => this.expect(() => null));
    socket.write(Buffer.concat(handshake));
    try {
      await Promise.all(answered);
    } catch (error) {
      socket.destroy();
      throw error;
    }
    this.socket = socket;
    return socket;
  }

  private expect(buffers: ValueBuffers): Promise<Buffer | null> {
    return new Promise((resolve, reject) => this.pending.push({ buffers, resolve, reject }));
  }

  private lost(socket: Socket): void {
    if (this.socket === socket) (this.socket = null), (this.connection = null);
    const error = new Error("connection to the store closed");
    for (const reply of this.pending.splice(0)) reply.reject(error);
    this.line = "";
    this.value = null;
    this.skip = 0;
  }

  /** Parses what Node read into `buffer`; the buffer is reused for the next read, so values are copied out now. */
  private received(buffer: Buffer, count: number): void {
    let at = 0;
    while (at < count) {
      if (this.value) {
        const copied = buffer.copy(this.value, this.filled, at, Math.min(count, at + this.value.length - this.filled));
        this.filled += copied;
        at += copied;
        if (this.filled === this.value.length) this.answer(this.value), (this.value = null), (this.skip = CR_LF);
      } else if (this.skip > 0) {
        const skipped = Math.min(this.skip, count - at);
        this.skip -= skipped;
        at += skipped;
      } else {
        const end = buffer.indexOf(10, at);
        const lineEnd = end === -1 || end >= count ? count : end + 1;
        this.line += buffer.toString("latin1", at, lineEnd);
        at = lineEnd;
        if (this.line.endsWith("\r\n")) this.parseLine(this.line.slice(0, -2)), (this.line = "");
      }
    }
  }

  private parseLine(line: string): void {
    const payload = line.slice(1);
    if (line[0] === "-") return this.fail(new ErrorReply(payload));
    if (line[0] === "+" || line[0] === ":") return this.answer(null);
    const bytes = line[0] === "$" ? Number(payload) : NaN;
    if (bytes === -1) return this.answer(null);
    if (!Number.isInteger(bytes) || bytes < 0 || this.pending.length === 0) {
      // Not a reply to anything this reader sent: the stream cannot be trusted any further.
      return this.fail(new Error(`unexpected reply from the store: '${line.slice(0, 40)}'`), true);
    }
    const own = this.pending[0].buffers(bytes);
    this.value = own && own.length >= bytes ? own.subarray(0, bytes) : Buffer.allocUnsafeSlow(bytes);
    this.filled = 0;
    if (bytes === 0) this.answer(this.value), (this.value = null), (this.skip = CR_LF);
  }

  private answer(value: Buffer | null): void {
    this.pending.shift()?.resolve(value);
  }

  private fail(error: Error, fatal = false): void {
    this.pending.shift()?.reject(error);
    if (fatal) void this.connection?.then((socket) => socket.destroy(), () => {});
  }
}
