import { connect, type ClientHttp2Session } from "node:http2";
import { connect as connectTcp, type Socket } from "node:net";
import { Duplex } from "node:stream";

const PREFACE_BYTES = 24;
const FRAME_HEADER_BYTES = 9;
const HEADERS_FRAME = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;

/**
 * An HTTP/2 client session to `host:port` that adds `name: value` to the
 * header block of every request it sends. Node's client refuses to send a
 * single-value header such as authorization twice, so the second one is
 * added on the wire, as an HPACK literal without indexing (which leaves both
 * sides' header tables as they were).
 */
export function connectAppendingHeader(host: string, port: number, name: string, value: string): ClientHttp2Session {
  // One-byte HPACK string lengths (7-bit prefix, no Huffman) keep the encoding simple.
  if (name.length > 126 || value.length > 126) throw new Error("name and value must be under 127 bytes");
  const field = Buffer.concat([Buffer.from([0x00, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)]);
  return connect(`http://${host}:${port}`, { createConnection: () => new HeaderAppendingConnection(connectTcp(port, host), field) });
}

/** Passes bytes through both ways, rewriting each complete unpadded HEADERS frame on the way out. */
class HeaderAppendingConnection extends Duplex {
  private pending = Buffer.alloc(0);
  private prefaceSent = false;

  constructor(
    private readonly socket: Socket,
    private readonly field: Buffer,
  ) {
    super();
    socket.on("data", (bytes) => this.push(bytes));
    socket.on("end", () => this.push(null));
    socket.on("error", (error) => this.destroy(error));
  }

  override _read(): void {}

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.pending = Buffer.concat([this.pending, chunk]);
    const out: Buffer[] = [];
    if (!this.prefaceSent && this.pending.length >= PREFACE_BYTES) {
      out.push(this.pending.subarray(0, PREFACE_BYTES));
      this.pending = this.pending.subarray(PREFACE_BYTES);
      this.prefaceSent = true;
    }
    while (this.prefaceSent && this.pending.length >= FRAME_HEADER_BYTES) {
      const length = this.pending.readUIntBE(0, 3);
      if (this.pending.length < FRAME_HEADER_BYTES + length) break;
      const frame = this.pending.subarray(0, FRAME_HEADER_BYTES + length);
      this.pending = this.pending.subarray(FRAME_HEADER_BYTES + length);
      const [type, flags] = [frame[3], frame[4]];
      if (type === HEADERS_FRAME && flags & END_HEADERS && !(flags & PADDED)) {
        const header = Buffer.from(frame.subarray(0, FRAME_HEADER_BYTES));
        header.writeUIntBE(length + this.field.length, 0, 3);
        out.push(header, frame.subarray(FRAME_HEADER_BYTES), this.field);
      } else {
        out.push(frame);
      }
    }
    this.socket.write(Buffer.concat(out), done);
  }

  override _final(done: () => void): void {
    this.socket.end(done);
  }

  override _destroy(error: Error | null, done: (error: Error | null) => void): void {
    this.socket.destroy();
    done(error);
  }
}
