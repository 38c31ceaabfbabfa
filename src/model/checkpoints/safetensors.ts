import { closeSync, existsSync, openSync, readFileSync, readSync } from "node:fs";
import { join } from "node:path";
import { bfloat16ToFloat32, float16ToFloat32 } from "../../numerics/float16.js";

/** Storage types kvwarden reads; every one is widened to float32. */
const DTYPES = { F32: 4, F16: 2, BF16: 2 } as const;
type TensorDtype = keyof typeof DTYPES;

export interface TensorInfo {
  name: string;
  /** As the file says: F32, F16, BF16, or one kvwarden refuses to read (I8, F8_E4M3, ...). */
  dtype: string;
  shape: number[];
  file: string;
  /** Byte offset of the data in `file`. */
  offset: number;
}

const INDEX_FILE = "model.safetensors.index.json";
const SINGLE_FILE = "model.safetensors";
/** readSync reads at most 2 GiB a call. */
const READ_CHUNK = 1 << 30;

/**
 * The tensors of a Hugging Face checkpoint (one model.safetensors, or shards
 * listed by model.safetensors.index.json), read lazily: opening parses only
 * the headers, and each tensor is read from disk when asked for, so a model is
 * never held in memory whole.
 */
export class SafetensorsCheckpoint {
  private constructor(private readonly tensors: Map<string, TensorInfo>) {}

  static open(dir: string): SafetensorsCheckpoint {
    const indexPath = join(dir, INDEX_FILE);
    let files: string[];
    if (existsSync(indexPath)) {
      const index = JSON.parse(readFileSync(indexPath, "utf8")) as { weight_map?: Record<string, string> };
      if (!index.weight_map) throw new Error(`${indexPath}: no weight_map`);
      files = [...new Set(Object.values(index.weight_map))];
    } else if (existsSync(join(dir, SINGLE_FILE))) {
      files = [SINGLE_FILE];
    } else {
      throw new Error(`${dir}: no ${SINGLE_FILE} or ${INDEX_FILE} (only safetensors checkpoints are read)`);
    }
    const tensors = new Map<string, TensorInfo>();
    for (const file of files) for (const info of readHeader(join(dir, file))) tensors.set(info.name, info);
    return new SafetensorsCheckpoint(tensors);
  }

  info(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (!info) throw new Error(`the checkpoint has no tensor '${name}'`);
    return info;
  }

  /** Storage dtypes found, e.g. ["BF16"]. */
  get dtypes(): string[] {
    return [...new Set(Array.from(this.tensors.values(), (t) => t.dtype))];
  }

  /** Reads a tensor as float32, checking its shape. */
  read(name: string, shape: readonly number[]): Float32Array {
    const info = this.info(name);
    if (info.shape.length !== shape.length || info.shape.some((n, i) => n !== shape[i])) {
      throw new Error(`tensor '${name}' has shape [${info.shape}], expected [${shape}]`);
    }
    if (!isReadable(info.dtype)) {
      throw new Error(`tensor '${name}' is stored as ${info.dtype}; kvwarden reads F32, F16 and BF16 (quantized checkpoints are not supported)`);
    }
    const count = shape.reduce((a, b) => a * b, 1);
    const out = new Float32Array(count);
    if (info.dtype === "F32") {
      readInto(info.file, info.offset, new Uint8Array(out.buffer));
      return out;
    }
    const bits = new Uint16Array(count);
    readInto(info.file, info.offset, new Uint8Array(bits.buffer));
    return info.dtype === "F16" ? float16ToFloat32(bits, out) : bfloat16ToFloat32(bits, out);
  }
}

/** A safetensors header: u64 little-endian length, then JSON {name: {dtype, shape, data_offsets}}. */
function readHeader(path: string): TensorInfo[] {
  const fd = openSync(path, "r");
  try {
    const prefix = Buffer.alloc(8);
    if (readSync(fd, prefix, 0, 8, 0) !== 8) throw new Error(`${path}: not a safetensors file`);
    const headerLength = Number(prefix.readBigUInt64LE(0));
    if (headerLength > 100 * 1024 * 1024) throw new Error(`${path}: not a safetensors file (header of ${headerLength} bytes)`);
    const header = Buffer.alloc(headerLength);
    if (readSync(fd, header, 0, headerLength, 8) !== headerLength) throw new Error(`${path}: truncated header`);
    const entries = JSON.parse(header.toString("utf8")) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
    const dataStart = 8 + headerLength;
    return Object.entries(entries)
      .filter(([name]) => name !== "__metadata__")
      .map(([name, entry]) => {
        const { dtype, shape } = entry;
        const [begin, end] = entry.data_offsets;
        const expected = isReadable(dtype) ? shape.reduce((a, b) => a * b, 1) * DTYPES[dtype] : end - begin;
        if (end - begin !== expected) throw new Error(`${path}: tensor '${name}' holds ${end - begin} bytes, expected ${expected}`);
        return { name, dtype, shape, file: path, offset: dataStart + begin };
      });
  } finally {
    closeSync(fd);
  }
}

function isReadable(dtype: string): dtype is TensorDtype {
  return Object.hasOwn(DTYPES, dtype);
}

function readInto(path: string, position: number, target: Uint8Array): void {
  const fd = openSync(path, "r");
  try {
    for (let done = 0; done < target.length; ) {
      const read = readSync(fd, target, done, Math.min(READ_CHUNK, target.length - done), position + done);
      if (read === 0) throw new Error(`${path}: truncated at byte ${position + done}`);
      done += read;
    }
  } finally {
    closeSync(fd);
  }
}
