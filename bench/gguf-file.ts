/**
 * A GGUF file (version 3), as ggml's format specification lays it out (docs/llama-cpp-anchor.md):
 * magic "GGUF", version, tensor count, metadata count; typed key-value metadata; one info per
 * tensor (name, dimensions innermost first, ggml type, offset into the data section); then the
 * tensor data, each tensor starting on a 32-byte boundary. Everything little-endian.
 *
 * Tensors are written one at a time through `data()` so a large model is never held whole; their
 * offsets are known up front from each tensor's type and shape.
 */
import { closeSync, openSync, writeSync } from "node:fs";
import { ggmlTensorBytes, type GgmlType } from "./ggml-blocks.js";

/** GGUF metadata value types, by the spec's numbering. */
const VALUE_TYPE = { uint32: 4, int32: 5, float32: 6, string: 8, array: 9 } as const;
const ALIGNMENT = 32;

export type GgufValue =
  | { uint32: number }
  | { float32: number }
  | { string: string }
  | { strings: readonly string[] }
  | { float32s: Float32Array }
  | { int32s: Int32Array };

export interface GgufTensor {
  name: string;
  /** ggml order: the innermost (contiguous) dimension first, e.g. [columns, rows]. */
  dims: readonly number[];
  type: GgmlType;
  /** The tensor's bytes in `type`'s encoding; called once, when the writer reaches it. */
  data(): Uint8Array;
}

/** Little-endian bytes appended to a growing list of chunks. */
class ByteSink {
  readonly chunks: Buffer[] = [];
  length = 0;

  private push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.length += chunk.length;
  }
  u32(value: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(value);
    this.push(b);
  }
  u64(value: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(value));
    this.push(b);
  }
  f32(value: number): void {
    const b = Buffer.alloc(4);
    b.writeFloatLE(value);
    this.push(b);
  }
  string(text: string): void {
    const bytes = Buffer.from(text, "utf8");
    this.u64(bytes.length);
    this.push(bytes);
  }
  bytes(view: ArrayBufferView): void {
    this.push(Buffer.from(view.buffer, view.byteOffset, view.byteLength));
  }
  padTo(alignment: number): void {
    const pad = (alignment - (this.length % alignment)) % alignment;
    if (pad > 0) this.push(Buffer.alloc(pad));
  }
}

function writeValue(sink: ByteSink, value: GgufValue): void {
  if ("uint32" in value) {
    sink.u32(VALUE_TYPE.uint32);
    sink.u32(value.uint32);
  } else if ("float32" in value) {
    sink.u32(VALUE_TYPE.float32);
    sink.f32(value.float32);
  } else if ("string" in value) {
    sink.u32(VALUE_TYPE.string);
    sink.string(value.string);
  } else {
    sink.u32(VALUE_TYPE.array);
    if ("strings" in value) {
      sink.u32(VALUE_TYPE.string);
      sink.u64(value.strings.length);
      for (const s of value.strings) sink.string(s);
    } else if ("float32s" in value) {
      sink.u32(VALUE_TYPE.float32);
      sink.u64(value.float32s.length);
      sink.bytes(value.float32s);
    } else {
      sink.u32(VALUE_TYPE.int32);
      sink.u64(value.int32s.length);
      sink.bytes(value.int32s);
    }
  }
}

/** Writes the whole file at `path`; returns its size and each tensor's bytes (padding excluded). */
export function writeGgufFile(path: string, metadata: ReadonlyMap<string, GgufValue>, tensors: readonly GgufTensor[]): { fileBytes: number; tensorBytes: Map<string, number> } {
  const header = new ByteSink();
  header.bytes(Buffer.from("GGUF", "ascii"));
  header.u32(3);
  header.u64(tensors.length);
  header.u64(metadata.size);
  for (const [key, value] of metadata) {
    header.string(key);
    writeValue(header, value);
  }
  const sizes = tensors.map((t) => ggmlTensorBytes(t.type, t.dims));
  let offset = 0;
  tensors.forEach((tensor, i) => {
    header.string(tensor.name);
    header.u32(tensor.dims.length);
    for (const dim of tensor.dims) header.u64(dim);
    header.u32(tensor.type);
    header.u64(offset);
    offset += Math.ceil(sizes[i] / ALIGNMENT) * ALIGNMENT;
  });
  header.padTo(ALIGNMENT);

  const fd = openSync(path, "w");
  try {
    let written = 0;
    for (const chunk of header.chunks) written += writeSync(fd, chunk);
    tensors.forEach((tensor, i) => {
      const bytes = tensor.data();
      if (bytes.length !== sizes[i]) throw new Error(`tensor ${tensor.name}: ${bytes.length} bytes, its type and shape need ${sizes[i]}`);
      written += writeSync(fd, bytes);
      const pad = (ALIGNMENT - (bytes.length % ALIGNMENT)) % ALIGNMENT;
      if (pad > 0) written += writeSync(fd, Buffer.alloc(pad));
    });
    return { fileBytes: written, tensorBytes: new Map(tensors.map((t, i) => [t.name, sizes[i]])) };
  } finally {
    closeSync(fd);
  }
}
