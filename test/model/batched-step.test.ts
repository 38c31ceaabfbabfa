import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EngineModel } from "../../src/engine/engine.js";
import { BatchArena } from "../../src/kv/batch-arena.js";
import { LayerCache, type KvDtype } from "../../src/kv/layer-cache.js";
import { SlabPool } from "../../src/kv/slab-pool.js";
import { float16ToFloat32 } from "../../src/numerics/float16.js";
import { loadModel } from "../../src/model/load-model.js";
import { SeededRandom } from "../../src/numerics/seeded-random.js";
import { runToEnd } from "../../src/numerics/sliced-work.js";
import type { StepOutput } from "../../src/model/runners/model-runner.js";
import { argmax } from "../reference/llama-forward.js";
import { MODEL_FILES } from "../support/test-model.js";

/** The issue's bound: a sequence's logits alone and in a batch differ by at most this. */
const TOLERANCE = 1e-4;

/** One sequence's cache, fed with the production types (LayerCache slabs). */
interface Member {
  readonly layers: LayerCache[];
  fed: number;
  next: number;
}

const floats = (array: Float32Array | Uint16Array) => (array instanceof Uint16Array ? float16ToFloat32(array) : array);

describe.each<KvDtype>(["float32", "float16"])("a batched decode step (%s KV) computes what each sequence's step alone does", (kvDtype) => {
  let model: EngineModel;
  const worst = { logits: 0, keys: 0, values: 0, queries: 0, colsums: 0 };

  beforeAll(async () => {
    model = await loadModel(MODEL_FILES, { executionProvider: "cpu", intraOpThreads: 1, kvDtype });
  });
  afterAll(() => console.log(`${kvDtype} KV, max abs difference batch vs alone: ${Object.entries(worst).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(", ")}`));

  function compare(measure: keyof typeof worst, batch: ArrayLike<number>, alone: ArrayLike<number>, where: string): void {
    expect(batch.length, `${measure} length ${where}`).toBe(alone.length);
    for (let i = 0; i < alone.length; i++) {
      const error = Math.abs(batch[i] - alone[i]);
      worst[measure] = Math.max(worst[measure], error);
      if (!(error <= TOLERANCE)) expect.fail(`${measure} ${where} [${i}]: batch ${batch[i]}, alone ${alone[i]}`);
    }
  }

  /** Appends what a step computed for member `b` of a batch of `out.batchSize` (as the engine does). */
  function absorb(member: Member, out: StepOutput, b: number): void {
    const { kvHeads, headSize, vocabSize } = model.config;
    member.layers.forEach((layer, l) => {
      const past = out.pastSlots[l];
      layer.append(out.newKeys, out.newValues, (l * out.batchSize + b) * kvHeads * headSize, 1, member.fed, out.attentionColsums[l], b * kvHeads * (past + 1), past);
    });
    member.fed++;
    member.next = argmax(out.logits.subarray(b * vocabSize, (b + 1) * vocabSize));
  }

  it("for sequences of different lengths and ragged heads joining and leaving the batch, with eviction between steps", async () => {
    const { config, runner } = model;
    const { layers: layerCount, kvHeads, heads, headSize, vocabSize } = config;
    const pool = new SlabPool(256 * 1024 * 1024);
    const random = new SeededRandom(7n);
    const members: Member[] = [];
    // Prompts of 1 to 150 tokens, prefilled alone.
    for (const length of [1, 9, 40, 77, 150, 23]) {
      const member: Member = { layers: Array.from({ length: layerCount }, () => new LayerCache(pool, { kvHeads, headSize, kvDtype })), fed: 0, next: 0 };
      const tokens = Array.from({ length }, (_, i) => (i === 0 ? 1 : 2 + Math.floor(random.next() * (vocabSize - 2))));
      for (const layer of member.layers) layer.reserve(length);
      const out = await runner.run({ tokens, firstPosition: 0, past: member.layers, queryRows: 1 });
      member.layers.forEach((layer, l) => layer.append(out.newKeys, out.newValues, l * kvHeads * length * headSize, length, 0, out.attentionColsums[l]));
      member.fed = length;
      member.next = argmax(out.logits);
      members.push(member);
    }
    /** Keeps a random share of each head's entries: heads and layers end up with different lengths. */
    const evictRagged = (member: Member) =>
      member.layers.forEach((layer) =>
        layer.retain(
          Array.from(layer.lengths, (n) => Int32Array.from({ length: n }, (_, i) => i).filter((i) => i === n - 1 || random.next() < 0.6)),
        ),
      );
    evictRagged(members[2]);
    evictRagged(members[4]);

    const arena = new BatchArena(layerCount, { kvHeads, headSize, kvDtype });
    // Who steps together, step after step: members join, leave, come back, change order.
    const schedule = [[0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0], [1, 3, 5], [0, 1, 2, 3, 4, 5], [2, 4], [0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5]];
    for (const [step, indices] of schedule.entries()) {
      if (step === 5) evictRagged(members[3]); // evicted while out of the batch
      if (step === 7) evictRagged(members[1]); // evicted between two batches it is in (steps 6 and 7)
      const batch = arena.arrange(indices.map((i) => members[i]));
      for (const member of batch) for (const layer of member.layers) layer.reserve(1);
      const tokens = batch.map((m) => m.next);
      const alone = await Promise.all(batch.map((m) => runner.run({ tokens: [m.next], firstPosition: m.fed, past: m.layers, queryRows: 1 })));
      const together = await runner.runDecodeBatch({ tokens, positions: batch.map((m) => m.fed), past: runToEnd(arena.gather(batch.map((m) => m.layers))) });
      expect(together.batchSize).toBe(batch.length);
      batch.forEach((member, b) => {
        const where = `step ${step}, member ${members.indexOf(member)} in slot ${b}`;
        const single = alone[b];
        compare("logits", together.logits.subarray(b * vocabSize, (b + 1) * vocabSize), single.logits, where);
        for (let l = 0; l < layerCount; l++) {
          const rowKv = kvHeads * headSize;
          const at = (l * batch.length + b) * rowKv;
          compare("keys", floats(together.newKeys.subarray(at, at + rowKv)), floats(single.newKeys.subarray(l * rowKv, (l + 1) * rowKv)), `${where} layer ${l}`);
          compare("values", floats(together.newValues.subarray(at, at + rowKv)), floats(single.newValues.subarray(l * rowKv, (l + 1) * rowKv)), `${where} layer ${l}`);
          const rowQ = heads * headSize;
          const q = (l * batch.length + b) * rowQ;
          compare("queries", together.queries.subarray(q, q + rowQ), single.queries.subarray(l * rowQ, (l + 1) * rowQ), `${where} layer ${l}`);
          const layer = member.layers[l];
          for (let h = 0; h < kvHeads; h++) {
            // Live entries and the new row; padding (beyond the head's length) gets exactly nothing in both.
            const n = layer.lengths[h];
            const batchRow = together.attentionColsums[l].subarray((b * kvHeads + h) * (together.pastSlots[l] + 1));
            const singleRow = single.attentionColsums[l].subarray(h * (single.pastSlots[l] + 1));
            compare("colsums", [...batchRow.subarray(0, n), batchRow[together.pastSlots[l]]], [...singleRow.subarray(0, n), singleRow[single.pastSlots[l]]], `${where} layer ${l} head ${h}`);
            expect(batchRow.subarray(n, together.pastSlots[l]).every((p) => p === 0), `${where}: padding gets no attention`).toBe(true);
          }
        }
        absorb(member, together, b);
      });
    }
    // Every member stepped as scheduled (batch outputs were appended, and the next steps still agreed).
    expect(members.map((m) => m.fed)).toEqual([1 + 6, 9 + 7, 40 + 7, 77 + 7, 150 + 7, 23 + 7]);
    expect(arena.bytes).toBeGreaterThan(0);
    arena.clear();
    expect(arena.bytes).toBe(0);
  });
});
