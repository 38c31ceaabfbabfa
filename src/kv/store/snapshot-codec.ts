import type { EvictionSpec } from "../../policies/policy.js";
import type { KvArray } from "../layer-cache.js";
import { ringWords } from "../recent-queries.js";
import type { LayerEntries } from "./layer-entries.js";
import type { KvSnapshot, SnapshotShape } from "./sequence-snapshot.js";
import { SnapshotCorrupt, SnapshotMismatch } from "./store-errors.js";

/**
 * The binary encoding of a KvSnapshot (docs/kv-store.md, "Snapshot encoding"): a magic, a format
 * version, a JSON header with the scalars and every array's length, then the arrays' raw bytes
 * (little-endian) in a fixed order. Raw bytes keep every float bit for bit, NaN payloads included.
 */
/**
 * 2: the recent-query ring is in the KV dtype (a float16 sequence's rows are float16 bits).
 * 3: chunks carry a CRC-32 instead of a sha256 (snapshot-manifest.ts).
 * 4: chunks carry an xxHash64 instead of a CRC-32.
 */
export const SNAPSHOT_FORMAT_VERSION = 4;
const MAGIC = Buffer.from("KVWSNAP", "latin1");
const PREAMBLE_BYTES = MAGIC.length + 1 + 4; // magic, version byte, header length

interface SnapshotHeader {
  shape: SnapshotShape;
  fedTokens: number;
  evictedAt: number;
  pendingToken: number | null;
  lastToken: number;
  logits: number; // -1: none
  decodeBudget: { spec: Omit<EvictionSpec, "seed"> & { seed?: string }; tokens: number } | null;
  lazyLayers: number[];
  layers: { lengths: number[]; headCapacities: number[] }[];
  /** The ring slab's raw 4-byte words (queries in the KV dtype, then positions). */
  ring: { words: number; count: number; next: number };
}

const bytesOf = (array: ArrayBufferView) => Buffer.from(array.buffer, array.byteOffset, array.byteLength);

/** The encoded snapshot as the pieces it is made of, in order (views of the snapshot's arrays, not copies). */
function encodedParts(snapshot: KvSnapshot): Buffer[] {
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new Error("snapshots are encoded little-endian; this machine is big-endian");
  const budget = snapshot.decodeBudget;
  const header: SnapshotHeader = {
    shape: snapshot.shape,
    fedTokens: snapshot.fedTokenIds.length,
    evictedAt: snapshot.evictedAt,
    pendingToken: snapshot.pendingToken,
    lastToken: snapshot.lastToken,
    logits: snapshot.lastLogits?.length ?? -1,
    decodeBudget: budget && { spec: { ...budget.spec, seed: budget.spec.seed?.toString() }, tokens: budget.tokens },
    lazyLayers: snapshot.lazyLayers,
    layers: snapshot.layers.map((layer) => ({ lengths: Array.from(layer.lengths), headCapacities: Array.from(layer.headCapacities) })),
    ring: { words: snapshot.recentQueries.slab.length, count: snapshot.recentQueries.count, next: snapshot.recentQueries.next },
  };
  // Padded with spaces (JSON allows them) so that the arrays start 8-byte aligned: a load may then decode them as views of the chunks it read.
  const unpadded = JSON.stringify(header);
  const json = Buffer.from(unpadded.padEnd(unpadded.length + ((8 - ((PREAMBLE_BYTES + Buffer.byteLength(unpadded)) % 8)) % 8)), "utf8");
  const preamble = Buffer.alloc(PREAMBLE_BYTES);
  MAGIC.copy(preamble);
  preamble.writeUInt8(SNAPSHOT_FORMAT_VERSION, MAGIC.length);
  preamble.writeUInt32LE(json.length, MAGIC.length + 1);
  const parts: Buffer[] = [preamble, json, bytesOf(snapshot.fedTokenIds)];
  if (snapshot.lastLogits) parts.push(bytesOf(snapshot.lastLogits));
  for (const layer of snapshot.layers) parts.push(bytesOf(layer.keys), bytesOf(layer.values), bytesOf(layer.mass), bytesOf(layer.positions));
  parts.push(bytesOf(snapshot.recentQueries.slab));
  return parts;
}

export function encodeSnapshot(snapshot: KvSnapshot): Buffer {
  return Buffer.concat(encodedParts(snapshot));
}

/**
 * The encoded snapshot cut into chunks of at most `chunkBytes`, each as the views of the snapshot's
 * arrays it holds: the same bytes as encodeSnapshot, with no copy (a store writes them gathered:
 * docs/kv-store.md, "Store throughput"). A chunk ends early rather than cut an array that fits in a
 * chunk of its own, so that a load can lend every such array from the chunk it arrives in; only a
 * larger array is cut. Readers take chunks of any size (the manifest lists them).
 */
export function encodeSnapshotChunks(snapshot: KvSnapshot, chunkBytes: number): Buffer[][] {
  const chunks: Buffer[][] = [];
  let chunk: Buffer[] = [];
  let filled = 0;
  const close = () => {
    if (chunk.length > 0) chunks.push(chunk), (chunk = []), (filled = 0);
  };
  for (const part of encodedParts(snapshot)) {
    if (part.length <= chunkBytes && filled + part.length > chunkBytes) close();
    for (let at = 0; at < part.length; ) {
      const count = Math.min(chunkBytes - filled, part.length - at);
      chunk.push(part.subarray(at, at + count));
      filled += count;
      at += count;
      if (filled === chunkBytes) close();
    }
  }
  close();
  return chunks;
}

/**
 * An encoded snapshot as the chunks it was stored in, read without joining them: joining would copy
 * the whole snapshot into fresh memory once more (docs/kv-store.md, "Benchmarks").
 */
class ChunkedBytes {
  readonly length: number;
  constructor(private readonly chunks: readonly Buffer[]) {
    this.length = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
  }

  /** Copies `length` bytes from offset `at` into `target` (the caller has checked the range). */
  copyTo(target: Uint8Array, at: number, length: number): void {
    let written = 0;
    let start = 0;
    for (const chunk of this.chunks) {
      const end = start + chunk.length;
      if (end > at + written && written < length) {
        const from = at + written - start;
        const count = Math.min(chunk.length - from, length - written);
        target.set(chunk.subarray(from, from + count), written);
        written += count;
      }
      start = end;
    }
  }

  /** The `length` bytes from `at` as a view of the chunk holding them all, starting `alignment`-aligned in memory; null when no chunk does. */
  view(at: number, length: number, alignment: number): Uint8Array | null {
    let start = 0;
    for (const chunk of this.chunks) {
      if (at >= start && at + length <= start + chunk.length) {
        const byteOffset = chunk.byteOffset + at - start;
        return byteOffset % alignment === 0 ? new Uint8Array(chunk.buffer, byteOffset, length) : null;
      }
      start += chunk.length;
    }
    return null;
  }

  /** `length` bytes from `at` (at most the bytes there are): a view when one chunk holds them, else a copy. */
  slice(at: number, length: number): Buffer {
    const count = Math.max(0, Math.min(length, this.length - at));
    let start = 0;
    for (const chunk of this.chunks) {
      if (at >= start && at + count <= start + chunk.length) return chunk.subarray(at - start, at - start + count);
      start += chunk.length;
    }
    const copy = Buffer.alloc(count);
    this.copyTo(copy, at, count);
    return copy;
  }
}

/**
 * Reads arrays off an encoded snapshot in order: each a copy that owns its memory or, when `lend`, a
 * view of the chunk that holds it where one chunk holds it all, aligned (no copy, no fresh memory).
 */
class ArrayReader {
  private at: number;
  constructor(
    private readonly bytes: ChunkedBytes,
    start: number,
    private readonly lend: boolean,
  ) {
    this.at = start;
  }

  /** The next `count` elements of `elementBytes` each, as the bytes of a view or of a copy. */
  private take(count: number, elementBytes: number): { buffer: ArrayBufferLike; byteOffset: number } {
    const byteLength = count * elementBytes;
    if (!Number.isInteger(byteLength) || byteLength < 0 || this.at + byteLength > this.bytes.length) {
      throw new SnapshotCorrupt(`snapshot is truncated: ${byteLength} bytes wanted at offset ${this.at} of ${this.bytes.length}`);
    }
    let bytes = this.lend ? this.bytes.view(this.at, byteLength, elementBytes) : null;
    if (!bytes) {
      bytes = new Uint8Array(byteLength);
      this.bytes.copyTo(bytes, this.at, byteLength);
    }
    this.at += byteLength;
    return bytes;
  }

  float32(count: number): Float32Array {
    const { buffer, byteOffset } = this.take(count, 4);
    return new Float32Array(buffer, byteOffset, count);
  }

  int32(count: number): Int32Array {
    const { buffer, byteOffset } = this.take(count, 4);
    return new Int32Array(buffer, byteOffset, count);
  }

  kv(count: number, dtype: SnapshotShape["kvDtype"]): KvArray {
    if (dtype === "float32") return this.float32(count);
    const { buffer, byteOffset } = this.take(count, 2);
    return new Uint16Array(buffer, byteOffset, count);
  }

  end(): void {
    if (this.at !== this.bytes.length) throw new SnapshotCorrupt(`snapshot has ${this.bytes.length - this.at} bytes past its end`);
  }
}

function parseHeader(bytes: ChunkedBytes): { header: SnapshotHeader; end: number } {
  const preamble = bytes.slice(0, PREAMBLE_BYTES);
  if (preamble.length < PREAMBLE_BYTES || !preamble.subarray(0, MAGIC.length).equals(MAGIC)) throw new SnapshotCorrupt("not a kvwarden snapshot (bad magic)");
  const version = preamble.readUInt8(MAGIC.length);
  if (version !== SNAPSHOT_FORMAT_VERSION) {
    throw new SnapshotMismatch(`snapshot format version ${version}; this build reads version ${SNAPSHOT_FORMAT_VERSION}`);
  }
  const length = preamble.readUInt32LE(MAGIC.length + 1);
  if (PREAMBLE_BYTES + length > bytes.length) throw new SnapshotCorrupt("snapshot is truncated inside its header");
  try {
    return { header: JSON.parse(bytes.slice(PREAMBLE_BYTES, length).toString("utf8")) as SnapshotHeader, end: PREAMBLE_BYTES + length };
  } catch (error) {
    throw new SnapshotCorrupt(`snapshot header is not valid JSON: ${(error as Error).message}`);
  }
}

/**
 * Decodes an encoded snapshot, whole or as the chunks it was stored in (in order). With `lend`, its
 * arrays may be views of those chunks (valid while the chunks are; see SnapshotStore.load); otherwise
 * they are copies.
 */
export function decodeSnapshot(encoded: Buffer | readonly Buffer[], { lend = false } = {}): KvSnapshot {
  const bytes = new ChunkedBytes(Buffer.isBuffer(encoded) ? [encoded] : encoded);
  const { header, end } = parseHeader(bytes);
  const reader = new ArrayReader(bytes, end, lend);
  const { headSize, kvDtype } = header.shape;
  try {
    const fedTokenIds = reader.int32(header.fedTokens);
    const lastLogits = header.logits >= 0 ? reader.float32(header.logits) : null;
    const layers = header.layers.map((layer): LayerEntries => {
      const rows = layer.lengths.reduce((sum, n) => sum + n, 0);
      return {
        lengths: Int32Array.from(layer.lengths),
        headCapacities: Int32Array.from(layer.headCapacities),
        keys: reader.kv(rows * headSize, kvDtype),
        values: reader.kv(rows * headSize, kvDtype),
        mass: reader.float32(rows),
        positions: reader.int32(rows),
      };
    });
    const words = ringWords(header.shape, header.shape.recentQueryRows, kvDtype);
    if (header.ring.words !== 0 && header.ring.words !== words) {
      throw new SnapshotCorrupt(`snapshot's query ring has ${header.ring.words} words; ${header.shape.recentQueryRows} ${kvDtype} rows take ${words}`);
    }
    const slab = reader.float32(header.ring.words);
    reader.end();
    const budget = header.decodeBudget;
    return {
      shape: header.shape,
      fedTokenIds,
      evictedAt: header.evictedAt,
      pendingToken: header.pendingToken,
      lastToken: header.lastToken,
      lastLogits,
      decodeBudget: budget && { spec: { ...budget.spec, seed: budget.spec.seed === undefined ? undefined : BigInt(budget.spec.seed) }, tokens: budget.tokens },
      lazyLayers: header.lazyLayers,
      layers,
      recentQueries: { rows: header.shape.recentQueryRows, slab, count: header.ring.count, next: header.ring.next },
    };
  } catch (error) {
    if (error instanceof SnapshotCorrupt) throw error;
    throw new SnapshotCorrupt(`snapshot header describes arrays it does not hold: ${(error as Error).message}`);
  }
}
