import { Xxh64, xxh64 } from "@node-rs/xxhash";
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
   * xxHash64 of the chunk (seed 0), 16 hex digits: it catches a chunk damaged or cut short in the
   * store or on the way. @node-rs/xxhash computes it at 21 GB/s here, against 11 for CRC-32 through
   * @node-rs/crc32 and 1.6 for sha256, and a save computes it on the thread that sends the chunks
   * (docs/kv-store.md, "Store throughput"). It is no defence against a writer who can change chunks
   * and manifests alike, and neither would a digest in an unsigned manifest be.
   */
  xxh64: string;
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

const hex64 = (hash: bigint) => hash.toString(16).padStart(16, "0");

/** A chunk's size and checksum, from the parts it is made of. */
export function describeChunk(parts: readonly Buffer[]): ChunkEntry {
  const hash = new Xxh64(0n);
  for (const part of parts) hash.update(part);
  return { bytes: parts.reduce((sum, part) => sum + part.length, 0), xxh64: hex64(hash.digest()) };
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
  if (hex64(xxh64(chunk, 0n)) !== entry.xxh64) throw new SnapshotCorrupt(`${what} fails its xxHash64 checksum`);
  return chunk;
}
