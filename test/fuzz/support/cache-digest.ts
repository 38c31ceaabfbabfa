import { createHash, type Hash } from "node:crypto";
import type { Engine } from "../../../src/engine/engine.js";
import { hostLayer } from "../../../src/kv/host-layer.js";

/** What a digest says of one sequence: a hash of everything it holds, and whether memory pressure may compress it. */
export interface SequenceDigest {
  hash: string;
  position: number;
  entries: number;
  hasDecodeBudget: boolean;
}

const update = (hash: Hash, array: ArrayBufferView) => hash.update(new Uint8Array(array.buffer, array.byteOffset, array.byteLength));

/**
 * Every sequence's cache, bit for bit: the live keys, values, attention mass
 * and positions of each head, the recent queries, the logits and where
 * generation stands. The API shows positions and sizes but not the K/V
 * numbers, so this reads the engine's private sequence table (test-only). Keyed by tenant and id.
 */
export function cacheDigests(engine: Engine): Map<string, SequenceDigest> {
  const digests = new Map<string, SequenceDigest>();
  for (const sequence of engine["table"].all()) {
    const key = `${sequence.tenant}\u0000${sequence.id}`;
    const hash = createHash("sha256");
    for (const kvLayer of sequence.layers) {
      const layer = hostLayer(kvLayer, "the fuzz engine runs on the CPU: its caches are host slabs");
      const { headSize } = layer.shape;
      layer.lengths.forEach((length, h) => {
        const rows = layer.offsets[h];
        update(hash, layer.keyStore.subarray(rows * headSize, (rows + length) * headSize));
        update(hash, layer.valueStore.subarray(rows * headSize, (rows + length) * headSize));
        update(hash, layer.mass.subarray(rows, rows + length));
        update(hash, layer.positions.subarray(rows, rows + length));
      });
    }
    const queries = sequence.recentQueries.view();
    update(hash, queries.positions);
    for (const rows of queries.layers) update(hash, rows);
    if (sequence.lastLogits) update(hash, sequence.lastLogits);
    hash.update(JSON.stringify([sequence.fedTokens, sequence.pendingToken, sequence.lastToken, sequence.decodeBudget?.policyName ?? null, sequence.decodeBudget?.tokens ?? null, sequence.lazyLayers]));
    digests.set(key, { hash: hash.digest("hex"), position: sequence.position, entries: sequence.entries, hasDecodeBudget: sequence.decodeBudget !== null });
  }
  return digests;
}
