import { closeSync, openSync, writeSync } from "node:fs";
import { setImmediate } from "node:timers/promises";
import type { OnnxGraph } from "./onnx-graph.js";
import type { GraphTensor, GraphWeights, ProjectionStorage, StoredTensor } from "./weight-layout.js";

function missing(name: string): never {
  throw new Error(`the step graph's weight '${name}' is missing`);
}

/** Weights embedded in the graph itself (small models). */
export function memoryWeights(tensors: Iterable<GraphTensor>, projections: ProjectionStorage): GraphWeights {
  const byName = new Map(Array.from(tensors, (t) => [t.name, t]));
  return {
    projections,
    has: (name) => byName.has(name),
    place: (g, name) => {
      const tensor = byName.get(name) ?? missing(name);
      return tensor.data instanceof Uint8Array ? g.bytes(name, tensor.dims, tensor.data) : g.floats(name, tensor.dims, tensor.data);
    },
  };
}

/** Weights that onnxruntime reads from `location`, a file beside the graph. */
export function fileWeights(location: string, stored: readonly StoredTensor[], projections: ProjectionStorage): GraphWeights {
  const byName = new Map(stored.map((t) => [t.name, t]));
  return {
    projections,
    has: (name) => byName.has(name),
    place: (g, name) => {
      const tensor = byName.get(name) ?? missing(name);
      return g.externalTensor(name, tensor.dims, tensor.type, location, tensor.offset, tensor.length);
    },
  };
}

/** Page-aligned tensors let onnxruntime map them from the file rather than copy them. */
const ALIGNMENT = 4096;
/** writeSync takes at most 2 GiB a call. */
const WRITE_CHUNK = 1 << 30;

/**
 * Writes tensors one after another (each is dropped once written) and says
 * where each went. Yields to the event loop between tensors, so a server
 * converting while it listens still answers health checks.
 */
export async function writeWeightsFile(path: string, tensors: Iterable<GraphTensor>): Promise<StoredTensor[]> {
  const fd = openSync(path, "w");
  try {
    const stored: StoredTensor[] = [];
    const pending = tensors[Symbol.iterator]();
    let offset = 0;
    for (;;) {
      await setImmediate(); // before each tensor is read, the first one included
      const next = pending.next();
      if (next.done) return stored;
      const tensor = next.value;
      offset = Math.ceil(offset / ALIGNMENT) * ALIGNMENT;
      const bytes = new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
      for (let done = 0; done < bytes.length; ) {
        done += writeSync(fd, bytes, done, Math.min(WRITE_CHUNK, bytes.length - done), offset + done);
      }
      stored.push({ name: tensor.name, dims: tensor.dims, type: tensor.data instanceof Uint8Array ? "uint8" : "float32", offset, length: bytes.length });
      offset += bytes.length;
    }
  } finally {
    closeSync(fd);
  }
}
