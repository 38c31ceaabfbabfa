import { crc32 } from "@node-rs/crc32";
import { SNAPSHOT_FORMAT_VERSION } from "./snapshot-codec.js";
import { SnapshotCorrupt, SnapshotMismatch } from "./store-errors.js";

/**
 * 4 MiB: LMCache measured 2-4 MB values as the fastest over RESP, and it stays far below Redis's
 * 512 MB proto-max-bulk-len (docs/kv-store.md, "Snapshot encoding").
 */
export const DEFAULT_CHUNK_BYTES = 4 * 2 ** 20;

export interface ChunkEntry {
  bytes: number;
  /**
   * CRC-32 (IEEE) of the chunk: it catches a chunk damaged or cut short in the store or on the way.
   * @node-rs/crc32 computes it with carry-less multiplication, at 16 GB/s here against 7 for
   * node:zlib's (same values) and 1.6 for sha256. It is no defence against a writer who can change
   * chunks and manifests alike, and neither would a digest in an unsigned manifest be (docs/kv-store.md).
   */
  crc32: number;
}

/**
 * Names a stored snapshot and its chunks; written after every chunk, so a reader that finds it finds
 * a whole snapshot. It repeats the model, tenant and sequence, which the reader checks against the
 * key it read (a manifest copied under another key is refused).
 */
export interface SnapshotManifest {
  format: "kvwarden-kv-snapshot";
  version: number;
  model: string;
  tenant: string;
  sequenceId: string;
  /** Unique per write: the chunk keys carry it. */
  snapshotId: string;
  /** The fencing token of the lease it was written under. */
  fence: number;
  bytes: number;
  chunks: ChunkEntry[];
  writtenAt: string;
}

export type ManifestIdentity = Pick<SnapshotManifest, "model" | "tenant" | "sequenceId">;

/** Cuts an encoded snapshot into chunks of `chunkBytes` (the last one shorter). */
export function splitChunks(encoded: Buffer, chunkBytes = DEFAULT_CHUNK_BYTES): Buffer[] {
  const chunks: Buffer[] = [];
  for (let at = 0; at < encoded.length; at += chunkBytes) chunks.push(encoded.subarray(at, at + chunkBytes));
  return chunks;
}

export function describeChunk(chunk: Buffer): ChunkEntry {
  return { bytes: chunk.length, crc32: crc32(chunk) };
}

export function encodeManifest(manifest: SnapshotManifest): Buffer {
  return Buffer.from(JSON.stringify(manifest), "utf8");
}

/** Parses a stored manifest and checks that it belongs to `expected`. */
export function decodeManifest(bytes: Buffer, expected: ManifestIdentity): SnapshotManifest {
  let manifest: SnapshotManifest;
  try {
    manifest = JSON.parse(bytes.toString("utf8")) as SnapshotManifest;
  } catch (error) {
    throw new SnapshotCorrupt(`snapshot manifest is not valid JSON: ${(error as Error).message}`);
  }
  if (manifest.format !== "kvwarden-kv-snapshot" || !Array.isArray(manifest.chunks)) throw new SnapshotCorrupt("snapshot manifest has an unknown format");
  if (manifest.version !== SNAPSHOT_FORMAT_VERSION) {
    throw new SnapshotMismatch(`snapshot format version ${manifest.version}; this build reads version ${SNAPSHOT_FORMAT_VERSION}`);
  }
  for (const field of ["model", "tenant", "sequenceId"] as const) {
    if (manifest[field] !== expected[field]) throw new SnapshotCorrupt(`snapshot manifest names ${field} '${manifest[field]}', its key '${expected[field]}'`);
  }
  if (manifest.chunks.reduce((sum, c) => sum + c.bytes, 0) !== manifest.bytes) throw new SnapshotCorrupt("snapshot manifest's chunk sizes do not add up to its size");
  return manifest;
}

/** Checks chunk `index` as read (null: missing) against the manifest; throws SnapshotCorrupt (DATA_LOSS) if it differs. */
export function verifyChunk(manifest: SnapshotManifest, index: number, chunk: Buffer | null): Buffer {
  const entry = manifest.chunks[index];
  const what = `chunk ${index + 1} of ${manifest.chunks.length} of snapshot ${manifest.snapshotId} (sequence '${manifest.sequenceId}')`;
  if (chunk === null) throw new SnapshotCorrupt(`${what} is missing`);
  if (chunk.length !== entry.bytes) throw new SnapshotCorrupt(`${what} has ${chunk.length} bytes, the manifest says ${entry.bytes}`);
  if (crc32(chunk) !== entry.crc32) throw new SnapshotCorrupt(`${what} fails its CRC-32 checksum`);
  return chunk;
}
