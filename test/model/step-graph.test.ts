import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EngineModel } from "../../src/engine/engine.js";
import { LayerCache } from "../../src/kv/layer-cache.js";
import { SlabPool } from "../../src/kv/slab-pool.js";
import type { ModelWeights } from "../../src/model/checkpoints/model-weights.js";
import { SeededRandom } from "../../src/numerics/seeded-random.js";
import { argmax, createReferenceCache, evictReference, referenceForward, type ReferenceCache } from "../reference/llama-forward.js";
import { loadTestModel, loadTestWeights, REFERENCE_TEXT } from "../support/test-model.js";

/** Max abs error allowed between the fp32 graph and the fp64 reference. */
const TOLERANCE = 1e-4;

type Measure = "logits" | "keys" | "values" | "queries" | "colsums" | "mass";
const worst: Record<Measure, number> = { logits: 0, keys: 0, values: 0, queries: 0, colsums: 0, mass: 0 };

function record(measure: Measure, actual: number, expected: number, where: string): void {
  const error = Math.abs(actual - expected);
  worst[measure] = Math.max(worst[measure], error);
  if (!(error < TOLERANCE)) expect.fail(`${measure} ${where}: graph ${actual}, reference ${expected}`);
}

/**
 * One sequence run two ways at once: the production path (StepRunner over
 * pooled LayerCache slabs, as Engine.feed drives it) and the reference pass
 * over its own cache. Every step compares all of the graph's outputs.
 */
class Twin {
  readonly layers: LayerCache[];
  readonly reference: ReferenceCache;
  /** [layer][kvHead][entry]: reference attention each entry received since cached (what LayerCache.mass accumulates). */
  private readonly mass: number[][][];
  private fed = 0;

  constructor(
    private readonly model: EngineModel,
    private readonly weights: ModelWeights,
  ) {
    const { config } = model;
    const pool = new SlabPool(64 * 1024 * 1024);
    this.layers = Array.from({ length: config.layers }, () => new LayerCache(pool, { kvHeads: config.kvHeads, headSize: config.headSize }));
    this.reference = createReferenceCache(config);
    this.mass = this.reference.map((layer) => layer.map(() => []));
  }

  /** Feeds `tokens` as one step; returns the greedy next token (graph and reference agree on it). */
  async step(tokens: number[], queryRows: number): Promise<number> {
    const { layers: layerCount, heads, kvHeads, headSize } = this.model.config;
    const group = heads / kvHeads;
    const count = tokens.length;
    for (const layer of this.layers) layer.reserve(count);
    const out = await this.model.runner.run({ tokens, firstPosition: this.fed, past: this.layers, queryRows });
    const pastLengths = this.layers.map((layer) => Array.from(layer.lengths));
    const ref = referenceForward(this.weights, this.reference, tokens, this.fed);
    const at = `at position ${this.fed}`;

    const expectedLogits = ref.logits[count - 1];
    out.logits.forEach((v, i) => record("logits", v, expectedLogits[i], `${at} [${i}]`));
    expect(argmax(out.logits)).toBe(argmax(expectedLogits));

    const rows = Math.min(queryRows, count);
    expect(out.queries.length).toBe(layerCount * heads * rows * headSize);
    for (let l = 0; l < layerCount; l++) {
      const capacity = this.layers[l].capacity;
      const colsum = out.attentionColsums[l];
      expect(colsum.length).toBe(kvHeads * (capacity + count));
      for (let h = 0; h < heads; h++) {
        for (let r = 0; r < rows; r++) {
          const query = ref.queries[l][count - rows + r][h];
          for (let i = 0; i < headSize; i++) {
            record("queries", out.queries[((l * heads + h) * rows + r) * headSize + i], query[i], `${at} layer ${l} head ${h} row ${r}`);
          }
        }
      }
      for (let g = 0; g < kvHeads; g++) {
        const past = pastLengths[l][g];
        const entries = this.reference[l][g];
        for (let r = 0; r < count; r++) {
          for (let i = 0; i < headSize; i++) {
            const from = (((l * kvHeads + g) * count + r) * headSize) + i;
            record("keys", out.newKeys[from], entries[past + r].key[i], `${at} layer ${l} kv head ${g} row ${r}`);
            record("values", out.newValues[from], entries[past + r].value[i], `${at} layer ${l} kv head ${g} row ${r}`);
          }
        }
        // Reference probabilities summed over the step's rows and the group's query heads.
        const expected = new Float64Array(past + count);
        for (let r = 0; r < count; r++) {
          for (let h = g * group; h < (g + 1) * group; h++) ref.attention[l][r][h].forEach((p, j) => (expected[j] += p));
        }
        const row = colsum.subarray(g * (capacity + count), (g + 1) * (capacity + count));
        for (let j = 0; j < past; j++) record("colsums", row[j], expected[j], `${at} layer ${l} kv head ${g} slot ${j}`);
        // Padding slots are masked with -inf: exactly no attention, not merely little.
        for (let j = past; j < capacity; j++) expect(row[j], `padding slot ${j} of layer ${l} kv head ${g}`).toBe(0);
        for (let r = 0; r < count; r++) record("colsums", row[capacity + r], expected[past + r], `${at} layer ${l} kv head ${g} new row ${r}`);
        const mass = this.mass[l][g];
        for (let j = 0; j < past; j++) mass[j] += expected[j];
        for (let r = 0; r < count; r++) mass.push(expected[past + r]);
      }
    }

    const stride = kvHeads * count * headSize;
    this.layers.forEach((layer, l) => layer.append(out.newKeys, out.newValues, l * stride, count, this.fed, out.attentionColsums[l]));
    this.fed += count;
    this.expectSameEntries();
    return argmax(out.logits);
  }

  /** Keeps entries `keep[l][h]` (indices into each head) in both caches. */
  evict(keep: number[][][]): void {
    this.layers.forEach((layer, l) => layer.retain(keep[l].map((slots) => Int32Array.from(slots))));
    evictReference(this.reference, keep);
    this.mass.forEach((layer, l) => layer.forEach((mass, g) => (layer[g] = keep[l][g].map((j) => mass[j]))));
    this.expectSameEntries();
  }

  /** The slabs hold exactly the reference's entries, in order, with their original positions. */
  private expectSameEntries(): void {
    const { headSize } = this.model.config;
    this.layers.forEach((layer, l) =>
      this.reference[l].forEach((entries, g) => {
        expect(layer.lengths[g]).toBe(entries.length);
        const base = layer.offsets[g];
        expect(Array.from(layer.positions.subarray(base, base + entries.length))).toEqual(entries.map((e) => e.position));
        entries.forEach((entry, j) => {
          for (let i = 0; i < headSize; i++) {
            record("keys", layer.keys[(base + j) * headSize + i], entry.key[i], `cached layer ${l} kv head ${g} slot ${j}`);
            record("values", layer.values[(base + j) * headSize + i], entry.value[i], `cached layer ${l} kv head ${g} slot ${j}`);
          }
          record("mass", layer.mass[base + j], this.mass[l][g][j], `cached layer ${l} kv head ${g} slot ${j}`);
        });
        expect(layer.mask.subarray(base, base + layer.headCapacities[g]).every((m, j) => m === (j < entries.length ? 0 : -Infinity))).toBe(true);
      }),
    );
  }
}

/** A seeded random subset of every head's entries, of a random size, so heads end up ragged. */
function randomKeep(twin: Twin, seed: number): number[][][] {
  const random = new SeededRandom(seed);
  return twin.reference.map((layer) =>
    layer.map((entries) => {
      const indices = entries.map((_, i) => i);
      const count = 1 + Math.floor(random.next() * (entries.length - 1));
      for (let i = 0; i < count; i++) {
        const j = i + Math.floor(random.next() * (indices.length - i));
        [indices[i], indices[j]] = [indices[j], indices[i]];
      }
      return indices.slice(0, count).sort((a, b) => a - b);
    }),
  );
}

describe("ONNX step graph against the reference forward pass", () => {
  let model: EngineModel;
  const weights = loadTestWeights();
  let prompt: number[];

  beforeAll(async () => {
    model = await loadTestModel();
    prompt = [model.tokenizer.bosId, ...model.tokenizer.encode(REFERENCE_TEXT)].slice(0, 37);
  });
  afterAll(async () => {
    console.log(`max abs error, graph vs reference: ${Object.entries(worst).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(", ")}`);
    await model.runner.release();
  });

  /** Prefills the prompt in uneven chunks, returning queries of only some rows. */
  async function prefill(twin: Twin): Promise<number> {
    let next = -1;
    for (const [start, end, queryRows] of [[0, 10, 3], [10, 16, 6], [16, 29, 64], [29, 37, 1]]) {
      next = await twin.step(prompt.slice(start, end), queryRows);
    }
    return next;
  }

  async function decode(twin: Twin, first: number, steps: number): Promise<number> {
    let next = first;
    for (let i = 0; i < steps; i++) next = await twin.step([next], 1);
    return next;
  }

  it("matches a chunked multi-token prefill from an empty cache", async () => {
    expect(prompt).toHaveLength(37);
    const twin = new Twin(model, weights);
    await prefill(twin);
    // The 37 entries leave padding slots in a 48-slot capacity, which the last chunk saw masked.
    expect(twin.layers.every((layer) => layer.capacity > 37)).toBe(true);
  });

  it("matches greedy decode steps after the prefill", async () => {
    const twin = new Twin(model, weights);
    await decode(twin, await prefill(twin), 16);
  });

  it("matches after evicting arbitrary, different entries per layer and KV head", async () => {
    const twin = new Twin(model, weights);
    let next = await decode(twin, await prefill(twin), 6);
    twin.evict(randomKeep(twin, 17));
    const lengths = twin.layers.map((layer) => Array.from(layer.lengths));
    expect(lengths.every((heads) => new Set(heads).size > 1)).toBe(true);
    next = await decode(twin, next, 12);
    // A multi-token step over a ragged cache, then a second eviction over entries added since the first.
    next = await twin.step([next, ...prompt.slice(1, 6)], 2);
    twin.evict(randomKeep(twin, 29));
    await decode(twin, next, 12);
  });
});
