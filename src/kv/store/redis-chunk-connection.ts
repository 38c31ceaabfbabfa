import { connect, type Socket } from "node:net";
import { ErrorReply } from "redis";
import type { ValueBuffers } from "./kv-store.js";

/** One argument of a command: a word, or a value gathered from the parts it is made of. */
export type CommandArgument = string | Buffer | readonly Buffer[];

/** A reply as the snapshot store uses it: a bulk string, an integer, or null (nil, or a status such as OK). */
export type Reply = Buffer | number | null;

/** Where one reply goes once parsed. */
interface PendingReply {
  buffers: ValueBuffers;
  resolve(value: Reply): void;
  reject(error: Error): void;
  /** AUTH or SELECT: when it fails, nothing after it on the socket can succeed. */
  handshake: boolean;
}

/** Node's reads land here, reused for every read of the connection. */
const READ_BUFFER_BYTES = 4 * 2 ** 20;
const CONNECT_TIMEOUT_MS = 5000;
const CR_LF = 2;
const noBuffers: ValueBuffers = () => null;

const byteLength = (argument: CommandArgument) =>
  typeof argument === "string" ? Buffer.byteLength(argument) : Buffer.isBuffer(argument) ? argument.length : argument.reduce((sum, part) => sum + part.length, 0);

/**
 * Moves snapshot chunks to and from one Redis or Valkey server on a connection of its own
 * (docs/kv-store.md, "Store throughput"). Reads: node-redis, like Node's default socket, reads a reply
 * in new 64 KiB Buffers and joins them into a new one per value; in a VM where memory touched for the
 * first time costs a page fault per page, that ran at a tenth of redis-benchmark's GET, and no client
 * on npm reads into buffers it is given. Here Node reads (`onread`) straight into the buffer a value
 * ends in, and everything else into one reused buffer: no copy of a value at all. Writes: a value
 * goes out gathered from its parts (the snapshot's own arrays) in one `writev`, never joined into a
 * copy, which node-redis cannot do.
 *
 * Every command is written the moment it is called, in the order of the calls (Node holds writes
 * made while the socket connects), and the server answers in that order: a write that must follow
 * others (a manifest after its chunks) needs no wait for their replies. It speaks only what the store
 * needs of RESP2: AUTH and SELECT as a socket opens, then pipelined commands whose replies are bulk
 * strings, nulls, integers, statuses or errors. Plain TCP only: TLS and Cluster stores go through
 * node-redis. Error replies reject as node-redis's ErrorReply, so the store classifies them alike; a
 * socket that fails rejects what is in flight, and the next command opens another.
 */
export class RedisChunkConnection {
  private socket: PipelinedSocket | null = null;

  constructor(private readonly url: URL) {}

  /** GETs `keys` in one pipeline: each value in a buffer from `buffers` where one fits, null where a key is missing. */
  async getMany(keys: readonly string[], buffers: ValueBuffers): Promise<(Buffer | null)[]> {
    const socket = this.open();
    const replies = keys.map((key) => socket.send(["GET", key], buffers));
    // Every reply settles before this does: none is still being copied into a buffer the caller reuses.
    const settled = await Promise.allSettled(replies);
    const failed = settled.find((reply) => reply.status === "rejected");
    if (failed) throw failed.reason;
    return settled.map((reply) => (reply as PromiseFulfilledResult<Reply>).value as Buffer | null);
  }

  /** Sends one command (written before this returns) and answers its reply; values given as parts are read until then. */
  command(args: readonly CommandArgument[]): Promise<Reply> {
    return this.open().send(args, noBuffers);
  }

  close(): void {
    this.socket?.destroy();
    this.socket = null;
  }

  private open(): PipelinedSocket {
    if (!this.socket?.usable) this.socket = new PipelinedSocket(this.url);
    return this.socket;
  }
}

/** One socket to the server: the replies it awaits, in order, and the reply being parsed. */
class PipelinedSocket {
  private readonly socket: Socket;
  private readonly pending: PendingReply[] = [];
  private line = "";
  private value: Buffer | null = null;
  private filled = 0;
  private skip = 0;

  constructor(url: URL) {
    const readBuffer = Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);
    const socket = connect({
      host: url.hostname.replace(/^\[|\]$/g, ""),
      port: Number(url.port || 6379),
      noDelay: true,
      // Asked before every read: the rest of the value being received, if one is, else the line buffer.
      onread: { buffer: () => (this.value ? this.value.subarray(this.filled) : readBuffer), callback: (count, buffer) => (this.received(buffer, count), true) },
    });
    this.socket = socket;
    let failure: Error | undefined;
    socket.setTimeout(CONNECT_TIMEOUT_MS, () => socket.destroy(new Error("connection to the store timed out")));
    socket.once("connect", () => socket.setTimeout(0));
    socket.on("error", (error) => (failure ??= error)); // 'close' follows, and fails what is in flight
    socket.on("close", () => this.failAll(failure ?? new Error("connection to the store closed")));
    const password = decodeURIComponent(url.password);
    const user = decodeURIComponent(url.username);
    const db = url.pathname.slice(1);
    if (password) void this.send(user ? ["AUTH", user, password] : ["AUTH", password], noBuffers, true).catch(() => {});
    if (db && db !== "0") void this.send(["SELECT", db], noBuffers, true).catch(() => {});
  }

  get usable(): boolean {
    return !this.socket.destroyed;
  }

  destroy(): void {
    this.socket.destroy();
  }

  send(args: readonly CommandArgument[], buffers: ValueBuffers, handshake = false): Promise<Reply> {
    // Failed and closing ('close' fails what is pending): nothing would answer.
    if (this.socket.destroyed) return Promise.reject(new Error("connection to the store closed"));
    const reply = new Promise<Reply>((resolve, reject) => this.pending.push({ buffers, resolve, reject, handshake }));
    const socket = this.socket;
    socket.cork();
    let words = `*${args.length}\r\n`;
    for (const argument of args) {
      words += `$${byteLength(argument)}\r\n`;
      if (typeof argument === "string") {
        words += `${argument}\r\n`;
        continue;
      }
      socket.write(words);
      for (const part of Buffer.isBuffer(argument) ? [argument] : argument) if (part.length > 0) socket.write(part);
      words = "\r\n";
    }
    socket.write(words);
    socket.uncork();
    return reply;
  }

  private failAll(error: Error): void {
    for (const reply of this.pending.splice(0)) reply.reject(error);
  }

  /**
   * Takes what Node read into `buffer`: the next bytes of the value being received, read in place,
   * or replies to parse from the line buffer, which the next read reuses (a value's first bytes there
   * are copied out now).
   */
  private received(buffer: Uint8Array, count: number): void {
    if (this.value && buffer.buffer === this.value.buffer) {
      this.filled += count;
      if (this.filled === this.value.length) this.finishValue();
      return;
    }
    this.parse(buffer as Buffer, count);
  }

  private parse(buffer: Buffer, count: number): void {
    let at = 0;
    while (at < count) {
      if (this.value) {
        const copied = buffer.copy(this.value, this.filled, at, Math.min(count, at + this.value.length - this.filled));
        this.filled += copied;
        at += copied;
        if (this.filled === this.value.length) this.finishValue();
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
    if (line[0] === "+") return this.answer(null);
    if (line[0] === ":" && /^-?\d+$/.test(payload)) return this.answer(Number(payload));
    const bytes = line[0] === "$" ? Number(payload) : NaN;
    if (bytes === -1) return this.answer(null);
    if (!Number.isInteger(bytes) || bytes < 0 || this.pending.length === 0) {
      // Not a reply to anything sent here: the stream cannot be trusted any further.
      this.failAll(new Error(`unexpected reply from the store: '${line.slice(0, 40)}'`));
      return void this.socket.destroy();
    }
    const own = this.pending[0].buffers(bytes);
    this.value = own && own.length >= bytes ? own.subarray(0, bytes) : Buffer.allocUnsafeSlow(bytes);
    this.filled = 0;
    if (bytes === 0) this.finishValue();
  }

  /** The value being received is whole: it answers its command, and the \r\n after it is skipped. */
  private finishValue(): void {
    this.answer(this.value);
    this.value = null;
    this.skip = CR_LF;
  }

  private answer(value: Reply): void {
    this.pending.shift()?.resolve(value);
  }

  private fail(error: ErrorReply): void {
    const reply = this.pending.shift();
    reply?.reject(error);
    // A refused AUTH or SELECT: what follows would only be refused for it, so it fails with the reason.
    if (reply?.handshake) this.failAll(error), this.socket.destroy();
  }
}
