import { beforeAll, describe, expect, it } from "vitest";
import { Sequence } from "../../../src/engine/sequence.js";
import { SlabPool } from "../../../src/kv/slab-pool.js";
import { restoreSnapshot, type KvSnapshot } from "../../../src/kv/store/sequence-snapshot.js";
import { decodeSnapshot, encodeSnapshot, encodeSnapshotChunks } from "../../../src/kv/store/snapshot-codec.js";
import { xxh64 } from "@node-rs/xxhash";
import { describeChunk } from "../../../src/kv/store/snapshot-manifest.js";
import { SnapshotCorrupt, SnapshotMismatch } from "../../../src/kv/store/store-errors.js";
import { capturedSnapshot } from "./support/captured-snapshot.js";

// The snapshot encoding (docs/kv-store.md, "Snapshot encoding"): exact round trip, and typed errors
// for anything that is not a whole snapshot of this format and shape.

describe("the snapshot encoding", () => {
  let snapshot: KvSnapshot;
  let encoded: Buffer;
  beforeAll(async () => {
    snapshot = await capturedSnapshot();
    encoded = encodeSnapshot(snapshot);
  }, 60_000);

  it("decodes to the same arrays and scalars, bit for bit", () => {
    const decoded = decodeSnapshot(encoded);
    expect(decoded).toEqual(snapshot);
    expect(decoded.decodeBudget).toMatchObject({ tokens: 36, spec: { policy: "h2o", budget: { maxTokens: 36 } } });
    expect(encodeSnapshot(decoded).equals(encoded)).toBe(true);
  });

  it("decodes the same from the chunks it was stored in, cut anywhere (inside the preamble, the header, an array)", () => {
    const headerEnd = 12 + encoded.readUInt32LE(8);
    for (const cuts of [[3], [headerEnd - 5, headerEnd + 1], [headerEnd + 7, Math.floor(encoded.length / 2), encoded.length - 1], Array.from({ length: 40 }, (_, i) => Math.floor(((i + 1) * encoded.length) / 41))]) {
      const chunks = [0, ...cuts].map((at, i) => encoded.subarray(at, cuts[i] ?? encoded.length));
      expect(Buffer.concat(chunks).equals(encoded)).toBe(true);
      expect(decodeSnapshot(chunks)).toEqual(snapshot);
    }
    expect(() => decodeSnapshot([encoded.subarray(0, 100), encoded.subarray(101)])).toThrow(SnapshotCorrupt);
  });

  it("starts its arrays 8-byte aligned, and lends them as views of the chunks they lie in whole when asked (copies across a cut)", () => {
    expect((12 + encoded.readUInt32LE(8)) % 8).toBe(0);
    // Chunks in buffers of their own, as a load reads them; one cut falls inside the first layer's keys.
    const cut = Math.floor(encoded.length / 3);
    const chunks = [encoded.subarray(0, cut), encoded.subarray(cut)].map((chunk) => Buffer.from(chunk));
    const lent = decodeSnapshot(chunks, { lend: true });
    expect(lent).toEqual(snapshot);
    const arrays = lent.layers.flatMap((layer) => [layer.keys, layer.values, layer.mass, layer.positions]);
    const viewed = arrays.filter((array) => chunks.some((chunk) => array.buffer === chunk.buffer));
    expect(viewed.length).toBeGreaterThan(arrays.length / 2);
    expect(viewed.length).toBeLessThan(arrays.length); // the array across the cut is a copy
    expect(decodeSnapshot(chunks).layers.some((layer) => chunks.some((chunk) => layer.keys.buffer === chunk.buffer))).toBe(false);
  });

  it("cuts the encoding into chunks of views of the snapshot's arrays, never through an array that fits in a chunk", () => {
    const own = new Set<ArrayBufferLike>(snapshot.layers.flatMap((layer) => [layer.keys.buffer, layer.values.buffer]));
    const largest = Math.max(...snapshot.layers.flatMap((layer) => [layer.keys.byteLength, layer.values.byteLength]));
    for (const chunkBytes of [5, 4096, largest, largest + 100, encoded.length, encoded.length + 1]) {
      const chunks = encodeSnapshotChunks(snapshot, chunkBytes);
      expect(Buffer.concat(chunks.flat()).equals(encoded)).toBe(true);
      for (const parts of chunks) expect(parts.reduce((sum, part) => sum + part.length, 0)).toBeLessThanOrEqual(chunkBytes);
      // No copy: the keys and values travel as views of the snapshot's own memory.
      expect(chunks.flat().some((part) => own.has(part.buffer))).toBe(true);
      // A chunk's checksum over its parts is the checksum of its bytes.
      expect(chunks.map(describeChunk)).toEqual(chunks.map((parts) => Buffer.concat(parts)).map((chunk) => ({ bytes: chunk.length, xxh64: xxh64(chunk).toString(16).padStart(16, "0") })));
      // Read back as a load reads them (each chunk in a buffer of its own), every array that fits in a chunk is lent, none copied.
      const stored = chunks.map((parts) => Buffer.concat(parts));
      const lent = decodeSnapshot(stored, { lend: true });
      expect(lent).toEqual(snapshot);
      if (chunkBytes >= largest) {
        for (const layer of lent.layers) for (const array of [layer.keys, layer.values]) expect(stored.some((chunk) => chunk.buffer === array.buffer)).toBe(true);
      }
    }
  });

  it("refuses a truncated or extended snapshot, or one that is not a snapshot, with DATA_LOSS", () => {
    for (const damaged of [encoded.subarray(0, encoded.length - 1), encoded.subarray(0, 20), Buffer.concat([encoded, Buffer.from([0])]), Buffer.from("not a snapshot")]) {
      expect(() => decodeSnapshot(damaged)).toThrow(SnapshotCorrupt);
    }
  });

  it("refuses another format version by name", () => {
    const future = Buffer.from(encoded);
    future[7] = 3; // version 3 checked its chunks with CRC-32
    expect(() => decodeSnapshot(future)).toThrow(new SnapshotMismatch("snapshot format version 3; this build reads version 4"));
  });

  it("restores only into a sequence of the same shape, and leaves nothing held when it refuses", () => {
    const pool = new SlabPool(1 << 24);
    const { layers, heads, kvHeads, headSize, recentQueryRows } = snapshot.shape;
    const other = new Sequence("s", "", pool, { layers, heads, kvHeads, headSize: headSize * 2 }, recentQueryRows);
    expect(() => restoreSnapshot(snapshot, other, () => null as never)).toThrow(/snapshot has headSize 8, this server's sequences have 16/);
    expect(pool.used).toBe(0);
    const tiny = new SlabPool(1024);
    const same = new Sequence("s", "", tiny, { layers, heads, kvHeads, headSize }, recentQueryRows);
    expect(() => restoreSnapshot(snapshot, same, () => ({ spec: snapshot.decodeBudget!.spec, slack: 0, tokens: 36 }))).toThrow(/KV budget exhausted/);
    expect(tiny.used).toBe(0);
    expect(same.fedTokens).toBe(0);
  });
});
