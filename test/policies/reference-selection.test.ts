import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Pooling, type EvictionSpec } from "../../src/gen/kvwarden/v1/kvwarden.js";
import { loadLlama2cCheckpoint } from "../../src/model/checkpoints/llama2c-checkpoint.js";
import type { KvDtype } from "../../src/kv/layer-cache.js";
import { loadModel } from "../../src/model/load-model.js";
import { knormReferenceHead } from "../reference/knorm-selection.js";
import { createReferenceCache, referenceForward, type ReferenceCache } from "../reference/llama-forward.js";
import { roundToFloat16 } from "../reference/float16-rounding.js";
import { naclReferenceLayer } from "../reference/nacl-selection.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

// kvwarden's NACL and knorm, through the sidecar over gRPC on the recall model, against selections
// written from the papers (test/reference) over keys and queries of the plain float64 forward pass.
const RECALL_DIR = fileURLToPath(new URL("../../models/recall/", import.meta.url));
const FILES = { modelPath: join(RECALL_DIR, "recall.bin"), tokenizerPath: join(RECALL_DIR, "tok.bin") };
const QUESTION = 502; // " what": the question starts at its last occurrence.

interface Prompt {
  tokens: number[];
  questionStart: number;
  cache: ReferenceCache;
  /** [layer][row][queryHead] */
  queries: Float64Array[][][];
}

/** Held-out prompts of 256 tokens: a passkey, a multikey and a multiquery task, the needle at depth 0.5. */
const PROMPTS = (readFileSync(join(RECALL_DIR, "heldout.jsonl"), "utf8").split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l)) as {
  task: string;
  length: number;
  depth: number;
  prompt_tokens: number[];
}[])
  .filter((r) => r.length === 256 && r.depth === 0.5)
  .filter((r, i, all) => all.findIndex((o) => o.task === r.task) === i)
  .map((r) => [1, ...r.prompt_tokens]);

/** Starts the sidecar on the recall model with `kvDtype` and prefills every prompt; runs the reference forward over them. */
async function prefillPrompts(kvDtype: KvDtype): Promise<{ t: TestServer; prompts: Prompt[] }> {
  const t = await startTestServer(await loadModel(FILES, { executionProvider: "cpu", intraOpThreads: 1, kvDtype }), { recentQueryRows: 64 });
  const weights = loadLlama2cCheckpoint(FILES.modelPath, "recall");
  const prompts: Prompt[] = [];
  for (const [i, tokens] of PROMPTS.entries()) {
    const cache = createReferenceCache(weights.config);
    const { queries } = referenceForward(weights, cache, tokens, 0);
    prompts.push({ tokens, questionStart: tokens.lastIndexOf(QUESTION), cache, queries });
    await t.client.prefill({ sequenceId: `prompt-${i}`, tokenIds: tokens });
  }
  return { t, prompts };
}

/** Evicts a Fork of prompt i with `eviction` and returns the positions each [layer][kvHead] kept. */
async function keptPositionsOn(t: TestServer, i: number, eviction: Partial<EvictionSpec>): Promise<number[][][]> {
  const id = `prompt-${i}-evicted`;
  await t.client.fork(`prompt-${i}`, id);
  try {
    await t.client.evict({ sequenceId: id, eviction });
    const stats = await t.client.stats({ sequenceId: id, includePositions: true });
    return stats.sequences[0].layers.map((layer) => layer.headPositions.map((h) => h.positions));
  } finally {
    await t.client.release(id);
  }
}

const keys = (p: Prompt, layer: number) => p.cache[layer].map((entries) => entries.map((e) => e.key));
const proxiesOf = (p: Prompt, layer: number, start: number) =>
  Array.from({ length: p.tokens.length - start }, (_, r) => ({ position: start + r, queries: p.queries[layer][start + r] }));
const budgetOf = (p: Prompt, keepFraction: number) => Math.floor(p.tokens.length * keepFraction);

describe("NACL and knorm keep exactly what the papers' selection keeps (recall model, over gRPC)", () => {
  let t: TestServer;
  let prompts: Prompt[] = [];

  beforeAll(async () => {
    ({ t, prompts } = await prefillPrompts("float32"));
  }, 120_000);
  afterAll(() => t?.close());

  const keptPositions = (i: number, eviction: Partial<EvictionSpec>) => keptPositionsOn(t, i, eviction);

  it("nacl without its random part: sinks, the question as proxies and the proxy top-k, per layer and KV head", async () => {
    for (const [i, p] of prompts.entries()) {
      for (const keepFraction of [0.2, 0.5]) {
        const kept = await keptPositions(i, {
          policy: "nacl",
          keepFraction,
          randomShare: 0,
          proxySpan: { start: p.questionStart, end: p.tokens.length },
        });
        kept.forEach((heads, l) => {
          const reference = naclReferenceLayer({
            keys: keys(p, l),
            proxies: proxiesOf(p, l, p.questionStart),
            sinks: 4,
            budget: budgetOf(p, keepFraction),
            randomShare: 0,
            causal: true,
          });
          heads.forEach((positions, h) => expect(positions, `prompt ${i} at ${keepFraction}, layer ${l} head ${h}`).toEqual(reference[h].deterministic));
        });
      }
    }
  });

  it("nacl with its random part: the same deterministic part, and the draws from the other candidates", async () => {
    for (const [i, p] of prompts.entries()) {
      const kept = await keptPositions(i, { policy: "nacl", keepFraction: 0.2, seed: 7n, proxyTokens: 16 });
      kept.forEach((heads, l) => {
        const budget = budgetOf(p, 0.2);
        const reference = naclReferenceLayer({ keys: keys(p, l), proxies: proxiesOf(p, l, p.tokens.length - 16), sinks: 4, budget, randomShare: 7 / 19, causal: true });
        heads.forEach((positions, h) => {
          expect(positions).toHaveLength(budget);
          expect(positions).toEqual(expect.arrayContaining(reference[h].deterministic));
          expect(positions.length - reference[h].deterministic.length).toBe(reference[h].randomCount);
        });
      });
    }
  });

  it("knorm: the lowest key norms in the layers it compresses, with and without skip layers, sinks and the reversed ablation", async () => {
    const settings: { eviction: Partial<EvictionSpec>; skip: number[]; highest: boolean; sinks: number }[] = [
      { eviction: {}, skip: [0, 1], highest: false, sinks: 0 },
      { eviction: { skipNoLayers: true }, skip: [], highest: false, sinks: 0 },
      { eviction: { skipNoLayers: true, sinkTokens: 1 }, skip: [], highest: false, sinks: 1 },
      { eviction: { skipLayers: [0], keepHighestNorm: true }, skip: [0], highest: true, sinks: 0 },
    ];
    for (const [i, p] of prompts.entries()) {
      for (const { eviction, skip, highest, sinks } of settings) {
        const kept = await keptPositions(i, { policy: "knorm", keepFraction: 0.2, ...eviction });
        kept.forEach((heads, l) =>
          heads.forEach((positions, h) => {
            const all = p.tokens.map((_, j) => j);
            const expected = skip.includes(l) ? all : knormReferenceHead(keys(p, l)[h], budgetOf(p, 0.2), { highest, sinks });
            expect(positions, `prompt ${i} ${JSON.stringify(eviction)}, layer ${l} head ${h}`).toEqual(expected);
          }),
        );
      }
    }
  });

  it("nacl's pooling ablation keeps each proxy peak's neighbours (max-pooled reference scores)", async () => {
    const p = prompts[0];
    const kept = await keptPositions(0, { policy: "nacl", keepFraction: 0.2, randomShare: 0, pooling: Pooling.POOLING_MAX, kernelSize: 7, proxySpan: { start: p.questionStart, end: p.tokens.length } });
    kept.forEach((heads, l) => {
      const reference = naclReferenceLayer({ keys: keys(p, l), proxies: proxiesOf(p, l, p.questionStart), sinks: 4, budget: budgetOf(p, 0.2), randomShare: 0, causal: true });
      heads.forEach((positions, h) => {
        const isProtected = (j: number) => j < 4 || j >= p.questionStart;
        const scores = reference[h].scores.map((s, j) => (isProtected(j) ? 0 : s));
        const pooled = scores.map((_, j) => Math.max(...scores.slice(Math.max(0, j - 3), j + 4)));
        const candidates = scores.map((_, j) => j).filter((j) => !isProtected(j));
        const top = candidates.sort((a, b) => pooled[b] - pooled[a] || a - b).slice(0, budgetOf(p, 0.2) - (4 + p.tokens.length - p.questionStart));
        const expected = [...Array(p.tokens.length).keys()].filter((j) => isProtected(j) || top.includes(j));
        expect(positions, `layer ${l} head ${h}`).toEqual(expected);
      });
    });
  });
});

describe("with float16 KV, NACL scores float16 keys and float16 recent queries (recall model, over gRPC)", () => {
  let t: TestServer;
  let prompts: Prompt[] = [];
  const rounded = (x: Float64Array) => x.map(roundToFloat16);

  beforeAll(async () => {
    ({ t, prompts } = await prefillPrompts("float16"));
  }, 120_000);
  afterAll(() => t?.close());

  it("the recent queries a policy reads are float16 values: in the first layer the reference's queries rounded", () => {
    for (const [i, p] of prompts.entries()) {
      // The engine's own sequence: the API shows no query numbers (test-only, as test/fuzz/support/cache-digest.ts reads caches).
      const sequence = [...t.engine["table"].all()].find((s) => s.id === `prompt-${i}`)!;
      const view = sequence.recentQueries.view();
      const { heads, headSize } = sequence.shape;
      expect(view.count).toBe(64);
      view.layers.forEach((layer, l) => {
        for (let h = 0; h < heads; h++) {
          for (let row = 0; row < view.count; row++) {
            const exact = p.queries[l][view.positions[row]][h];
            for (let k = 0; k < headSize; k++) {
              const value = layer[(h * view.count + row) * headSize + k];
              expect(roundToFloat16(value), `prompt ${i} layer ${l} head ${h} row ${row}`).toBe(value);
              // Layer 0's queries depend on no cached keys and values (later layers' read float16 ones): the reference's
              // rounded, within the float32 graph's tolerance (test/model/step-graph.test.ts) and one float16 step.
              if (l > 0) continue;
              const step = 2 ** (Math.max(Math.floor(Math.log2(Math.abs(exact[k]) || 2 ** -14)), -14) - 10);
              expect(Math.abs(value - roundToFloat16(exact[k])), `prompt ${i} layer ${l} head ${h} row ${row}`).toBeLessThanOrEqual(1e-4 + step);
            }
          }
        }
      });
    }
  });

  it("nacl without its random part keeps exactly the paper's selection over float16-rounded keys and queries", async () => {
    for (const [i, p] of prompts.entries()) {
      for (const keepFraction of [0.2, 0.5]) {
        const kept = await keptPositionsOn(t, i, { policy: "nacl", keepFraction, randomShare: 0, proxySpan: { start: p.questionStart, end: p.tokens.length } });
        kept.forEach((heads, l) => {
          const reference = naclReferenceLayer({
            keys: keys(p, l).map((head) => head.map(rounded)),
            proxies: proxiesOf(p, l, p.questionStart).map(({ position, queries }) => ({ position, queries: queries.map(rounded) })),
            sinks: 4,
            budget: budgetOf(p, keepFraction),
            randomShare: 0,
            causal: true,
          });
          heads.forEach((positions, h) => expect(positions, `prompt ${i} at ${keepFraction}, layer ${l} head ${h}`).toEqual(reference[h].deterministic));
        });
      }
    }
  });
});
