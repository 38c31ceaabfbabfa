import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EngineModel } from "../../src/engine/engine.js";
import { DecodeRequest, type DecodeResponse, type EvictionResult, type EvictionSpec, type SequenceStats } from "../../src/gen/kvwarden/v1/kvwarden.js";
import type { ModelWeights } from "../../src/model/checkpoints/model-weights.js";
import { pyramidBudget } from "../../src/policies/allocators/pyramid.js";
import { argmax, createReferenceCache, evictReference, referenceForward, type ReferenceCache } from "../reference/llama-forward.js";
import { loadTestModel, loadTestWeights } from "../support/test-model.js";
import { decodeAll, startTestServer, statusOf, type TestServer } from "../support/test-server.js";

/**
 * Every policy over gRPC on stories260K: evict a 205-token prompt, read back
 * which positions each head kept, and
 * check that greedy decoding equals the plain reference forward pass run on a
 * cache holding exactly those entries, at the original positions. Then the
 * decode-time budgets, query-aware use and memory pressure.
 */

/** BOS + this is 205 tokens: a story whose ending depends on its start, so what eviction keeps changes the continuation. */
const STORY =
  "Once upon a time, there was a little dog named Max. Max had a red ball, a blue kite and a big green hat. " +
  "He lived with a girl named Sue in a small house near the sea. Every morning Sue and Max went to the beach. " +
  "One day, a strong wind came and took the blue kite up into the sky. Max barked and ran after it. " +
  "The kite flew over the trees and over the hill. Max ran until he found it in a tall tree. The owl gave the kite to Max, and Max";
const PROMPT_LENGTH = 205;
/** Budget C for the prefill evictions: above every default minimum (nacl's 37), under a quarter of the prompt. */
const C = 48;
const NEW_TOKENS = 15;
/** SnapKV's default observation window. */
const SNAPKV_WINDOW = 32;
/** A SimLayerKV threshold between this prompt's layer scores at C = 48, so some layers are lazy and some not. */
const SIMLAYERKV_DELTA = 0.77;

type Spec = Partial<EvictionSpec>;

/** Per layer, per KV head: the original positions held. */
type HeadPositions = number[][][];

/**
 * The reference pass driven the way the engine drives a sequence: a decoded
 * token is fed by the next step that needs it, and positions count every
 * token ever fed, whatever the cache holds.
 */
class ReferenceSequence {
  cache: ReferenceCache;
  fed = 0;
  private pending: number | null = null;
  private logits: Float64Array = new Float64Array();

  constructor(private readonly weights: ModelWeights) {
    this.cache = createReferenceCache(weights.config);
  }

  feed(tokens: readonly number[]): void {
    const all = this.pending === null ? [...tokens] : [this.pending, ...tokens];
    this.logits = referenceForward(this.weights, this.cache, all, this.fed).logits[all.length - 1];
    this.fed += all.length;
    this.pending = null;
  }

  /** Greedy tokens; `beforeStep` may evict before each step, as a decode budget does. */
  greedy(count: number, beforeStep: (sequence: ReferenceSequence) => void = () => {}): number[] {
    const tokens: number[] = [];
    for (let i = 0; i < count; i++) {
      if (this.pending !== null) this.feed([]);
      beforeStep(this);
      this.pending = argmax(this.logits);
      tokens.push(this.pending);
    }
    return tokens;
  }

  /** Keeps exactly the entries at these original positions, per layer and KV head. */
  keepPositions(positions: HeadPositions): void {
    evictReference(
      this.cache,
      this.cache.map((layer, l) =>
        layer.map((entries, h) => {
          const wanted = new Set(positions[l][h]);
          const indices = entries.flatMap((entry, i) => (wanted.has(entry.position) ? [i] : []));
          if (indices.length !== wanted.size) throw new Error(`layer ${l} head ${h}: the reference lacks some kept positions`);
          return indices;
        }),
      ),
    );
  }

  headLengths(): number[][] {
    return this.cache.map((layer) => layer.map((entries) => entries.length));
  }

  clone(): ReferenceSequence {
    const copy = new ReferenceSequence(this.weights);
    copy.cache = this.cache.map((layer) => layer.map((entries) => [...entries]));
    copy.fed = this.fed;
    copy.pending = this.pending;
    copy.logits = this.logits;
    return copy;
  }
}

const range = (start: number, count: number) => Array.from({ length: count }, (_, i) => start + i);
const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
const lengthsOf = (stats: Pick<SequenceStats, "layers">) => stats.layers.map((layer) => layer.headLengths);
const positionsOf = (stats: Pick<SequenceStats, "layers">): HeadPositions =>
  stats.layers.map((layer) => layer.headPositions.map((head) => head.positions));
const maxHead = (lengths: number[][]) => Math.max(...lengths.flat());

describe("every policy over gRPC decodes as the reference does on the entries it kept", () => {
  const weights = loadTestWeights();
  const { layers, kvHeads } = weights.config;
  let model: EngineModel;
  let t: TestServer;
  let prompt: number[];
  /** The reference right after the prompt, full cache. */
  let prompted: ReferenceSequence;

  const stats = async (sequenceId: string) => (await t.client.stats({ sequenceId, includePositions: true })).sequences[0];
  const greedy = (sequenceId: string, maxNewTokens: number, eviction?: Spec) =>
    decodeAll(t.client, { sequenceId, maxNewTokens, ignoreEos: true, eviction });
  const prefill = (sequenceId: string, tokenIds: number[], eviction?: Spec) => t.client.prefill({ sequenceId, tokenIds, eviction });

  /** Greedy tokens of the reference holding exactly `positions` after the prompt. */
  function expectedAfter(positions: HeadPositions): number[] {
    const reference = prompted.clone();
    reference.keepPositions(positions);
    return reference.greedy(NEW_TOKENS);
  }

  beforeAll(async () => {
    model = await loadTestModel();
    t = await startTestServer(model);
    prompt = [model.tokenizer.bosId, ...model.tokenizer.encode(STORY)];
    prompted = new ReferenceSequence(weights);
    prompted.feed(prompt);
  });
  afterAll(() => t.close());

  /**
   * AdaKV: ragged heads (some layer's heads keep different counts), each layer sharing about Hkv
   * times its base budget; the official per-head rounding may move the total by -1.5 .. +0.5 a head.
   */
  function expectAdaptive(lengths: number[][], layerBudget: (layer: number) => number): void {
    expect(lengths.some((heads) => new Set(heads).size > 1)).toBe(true);
    lengths.forEach((heads, l) => {
      expect(sum(heads) - kvHeads * layerBudget(l)).toBeGreaterThanOrEqual(-1.5 * kvHeads);
      expect(sum(heads) - kvHeads * layerBudget(l)).toBeLessThanOrEqual(kvHeads / 2);
    });
  }

  /** Kept lengths each policy must produce at C on this prompt (P = 205 entries per head before). */
  const KEPT_LENGTHS: Record<string, (lengths: number[][], result: EvictionResult) => void> = {
    uniform: (lengths) => expect(lengths).toEqual(Array.from({ length: layers }, () => Array(kvHeads).fill(C))),
    none: (lengths) => expect(lengths).toEqual(Array.from({ length: layers }, () => Array(kvHeads).fill(prompt.length))),
    pyramid: (lengths) => {
      // Uniform within a layer, falling from the bottom layer to the top, averaging C (integer rounding adds a little).
      for (const heads of lengths) expect(new Set(heads).size).toBe(1);
      const perLayer = lengths.map((heads) => heads[0]);
      expect(perLayer[0]).toBeGreaterThan(perLayer[layers - 1]);
      perLayer.slice(1).forEach((n, l) => expect(n).toBeLessThanOrEqual(perLayer[l]));
      expect(sum(perLayer)).toBeGreaterThanOrEqual(layers * C);
      expect(sum(perLayer)).toBeLessThan(layers * C + layers);
    },
    adaptive: (lengths) => expectAdaptive(lengths, () => C),
    adaptivePyramid: (lengths) => expectAdaptive(lengths, (l) => pyramidBudget(prompt.length, C, SNAPKV_WINDOW, 20, l, layers)),
    knorm: (lengths) =>
      // Layers 0 and 1 are skipped by default (KNorm's norm-attention link fails there).
      expect(lengths).toEqual(Array.from({ length: layers }, (_, l) => Array(kvHeads).fill(l < 2 ? prompt.length : C))),
    simlayerkv: (lengths, result) => {
      expect(result.lazyLayers.length).toBeGreaterThan(0);
      expect(result.lazyLayers.length).toBeLessThan(layers);
      expect(lengths).toEqual(lengths.map((_, l) => Array(kvHeads).fill(result.lazyLayers.includes(l) ? C : prompt.length)));
    },
  };

  const CASES: { label: string; spec: Spec; lengths: keyof typeof KEPT_LENGTHS; sinks?: number }[] = [
    { label: "none", spec: { policy: "none" }, lengths: "none" },
    { label: "streaming_llm", spec: { policy: "streaming_llm", maxTokens: C }, lengths: "uniform", sinks: 4 },
    { label: "snapkv", spec: { policy: "snapkv", maxTokens: C }, lengths: "uniform" },
    { label: "pyramidkv", spec: { policy: "pyramidkv", maxTokens: C }, lengths: "pyramid" },
    { label: "adakv over snapkv", spec: { policy: "adakv", maxTokens: C }, lengths: "adaptive" },
    { label: "adakv over pyramidkv", spec: { policy: "adakv", maxTokens: C, basePolicy: "pyramidkv" }, lengths: "adaptivePyramid" },
    { label: "nacl with the default proxies", spec: { policy: "nacl", maxTokens: C, seed: 11n }, lengths: "uniform", sinks: 4 },
    {
      label: "nacl with a proxy span",
      spec: { policy: "nacl", maxTokens: C, seed: 11n, proxySpan: { start: 165, end: 185 } },
      lengths: "uniform",
      sinks: 4,
    },
    { label: "knorm", spec: { policy: "knorm", maxTokens: C }, lengths: "knorm" },
    { label: "simlayerkv", spec: { policy: "simlayerkv", maxTokens: C, delta: SIMLAYERKV_DELTA }, lengths: "simlayerkv" },
    { label: "h2o", spec: { policy: "h2o", maxTokens: C }, lengths: "uniform" },
    { label: "tova", spec: { policy: "tova", maxTokens: C }, lengths: "uniform" },
    { label: "random", spec: { policy: "random", maxTokens: C, seed: 11n }, lengths: "uniform", sinks: 4 },
  ];

  it("covers all eleven policies", () => {
    expect(new Set(CASES.map((c) => c.spec.policy)).size).toBe(11);
    expect(prompt.length).toBe(PROMPT_LENGTH);
  });

  it.each(CASES)("$label: Prefill evicts, Stats lists the kept positions, Decode matches the reference on them", async ({ label, spec, lengths, sinks }) => {
    const id = `prefill-${label}`;
    const p = prompt.length;
    const response = await prefill(id, prompt, spec);
    const after = await stats(id);
    const result = response.eviction!;
    const kept = lengthsOf(after);
    const evicts = spec.policy !== "none";
    expect(result).toMatchObject({
      policy: spec.policy,
      applied: evicts,
      entriesBefore: BigInt(layers * kvHeads * p),
      entriesAfter: after.entries,
      bytesAfter: after.kvBytes,
      lazyLayers: after.lazyLayers,
      kept: kept.map((headLengths) => ({ headLengths, headPositions: [] })),
    });
    if (evicts) {
      expect(result.budgetTokens).toBe(C);
      expect(result.bytesAfter).toBeLessThan(result.bytesBefore);
    }
    expect(after.entries).toBe(BigInt(sum(kept.flat())));
    expect(after.position).toBe(p);
    KEPT_LENGTHS[lengths](kept, result);

    const positions = positionsOf(after);
    positions.forEach((heads, l) =>
      heads.forEach((held, h) => {
        expect(held, `layer ${l} head ${h}`).toHaveLength(kept[l][h]);
        expect(held.every((position, i) => position >= 0 && position < p && (i === 0 || position > held[i - 1]))).toBe(true);
        if (sinks) expect(held.slice(0, sinks)).toEqual(range(0, sinks));
      }),
    );
    if (spec.proxySpan) for (const held of positions.flat()) expect(held).toEqual(expect.arrayContaining(range(165, 20)));

    const messages = await greedy(id, NEW_TOKENS);
    expect(messages.map((m) => m.tokenId)).toEqual(expectedAfter(positions));
    expect(messages.map((m) => m.position)).toEqual(range(p, NEW_TOKENS));
    await t.client.release(id);
  });

  it("the kept entries matter: every policy's continuation differs from the full cache's", async () => {
    const full = prompted.clone().greedy(NEW_TOKENS);
    for (const { label, spec } of CASES.filter((c) => c.spec.policy !== "none")) {
      await prefill(`matter-${label}`, prompt, spec);
      expect(expectedAfter(positionsOf(await stats(`matter-${label}`))), label).not.toEqual(full);
      await t.client.release(`matter-${label}`);
    }
  });

  it.each(["nacl", "random"])("%s: the same seed keeps the same positions, another seed others", async (policy) => {
    const keptWith = async (id: string, seed: bigint) => {
      await prefill(id, prompt, { policy, maxTokens: C, seed });
      return positionsOf(await stats(id));
    };
    const first = await keptWith(`${policy}-seed-a`, 5n);
    expect(await keptWith(`${policy}-seed-b`, 5n)).toEqual(first);
    expect(await keptWith(`${policy}-seed-c`, 6n)).not.toEqual(first);
  });

  it("Evict with simlayerkv reports the same lazy layers as Stats, and a later eviction replaces them", async () => {
    await prefill("lazy", prompt);
    const spec = { policy: "simlayerkv", maxTokens: C, delta: SIMLAYERKV_DELTA };
    const { eviction } = await t.client.evict({ sequenceId: "lazy", eviction: spec });
    expect(eviction!.lazyLayers.length).toBeGreaterThan(0);
    expect((await stats("lazy")).lazyLayers).toEqual(eviction!.lazyLayers);
    await t.client.evict({ sequenceId: "lazy", eviction: { policy: "streaming_llm", maxTokens: 32 } });
    expect((await stats("lazy")).lazyLayers).toEqual([]);
  });

  describe("decode-time budgets", () => {
    /** Decodes, polling Stats after every message: the longest head each time. */
    async function decodeWatching(sequenceId: string, maxNewTokens: number, eviction: Spec) {
      const messages: DecodeResponse[] = [];
      const longest: number[] = [];
      for await (const message of t.client.decode(DecodeRequest.fromPartial({ sequenceId, maxNewTokens, ignoreEos: true, eviction }))) {
        messages.push(message);
        longest.push(maxHead(lengthsOf(await stats(sequenceId))));
      }
      return { messages, longest };
    }

    it.each(["h2o", "tova"])("%s runs every step: no head ever holds more than C", async (policy) => {
      const budget = 40;
      await prefill(`every-${policy}`, prompt);
      const { messages, longest } = await decodeWatching(`every-${policy}`, 60, { policy, maxTokens: budget });
      expect(messages).toHaveLength(60);
      // Stats may see a step's new entry (C + 1) while the eviction after it is planned (in slices, letting other calls through).
      expect(Math.max(...longest)).toBeLessThanOrEqual(budget + 1);
      // The first step compacts the prompt; each later one feeds the previous token (C + 1) and compacts again.
      messages.forEach((m, i) => {
        expect(m.eviction, `message ${i}`).toBeDefined();
        expect(m.eviction!.kept.every((layer) => layer.headLengths.every((n) => n <= budget))).toBe(true);
        expect(m.eviction!.entriesBefore).toBe(BigInt(layers * kvHeads * (i === 0 ? prompt.length : budget + 1)));
      });
      expect(await stats(`every-${policy}`)).toMatchObject({ decodePolicy: policy, decodeBudgetTokens: budget });
    });

    it.each([
      ["the default slack of 64", undefined, 64],
      ["decode_slack 8", 8, 8],
    ])("streaming_llm with %s: heads stay within C + slack and decode as the reference", async (_name, decodeSlack, slack) => {
      const budget = 32;
      const id = `slack-${slack}`;
      await prefill(id, prompt);
      const { messages, longest } = await decodeWatching(id, 60, { policy: "streaming_llm", maxTokens: budget, decodeSlack });
      // The prompt is compacted at once; then a head grows to C + slack and is compacted on the next step.
      const evictedAt = messages.flatMap((m, i) => (m.eviction ? [i] : []));
      expect(evictedAt).toEqual(range(0, 60).filter((i) => i % (slack + 1) === 0));
      // As above, Stats may see the step's new entry (C + slack + 1) while the compaction after it is planned.
      expect(Math.max(...longest)).toBeLessThanOrEqual(budget + slack + 1);
      for (const m of messages.filter((m) => m.eviction)) {
        expect(m.eviction).toMatchObject({ policy: "streaming_llm", applied: true, budgetTokens: budget });
        expect(maxHead(m.eviction!.kept.map((layer) => layer.headLengths))).toBe(budget);
      }
      expect(await stats(id)).toMatchObject({ decodePolicy: "streaming_llm", decodeBudgetTokens: budget });

      // The reference with StreamingLLM applied whenever a head passes C + slack.
      const reference = prompted.clone();
      const sinksAndRecent = (entries: { position: number }[]) =>
        entries.map((entry) => entry.position).filter((_, i) => i < 4 || i >= entries.length - (budget - 4));
      const expected = reference.greedy(60, (sequence) => {
        if (maxHead(sequence.headLengths()) > budget + slack) sequence.keepPositions(sequence.cache.map((layer) => layer.map(sinksAndRecent)));
      });
      expect(messages.map((m) => m.tokenId)).toEqual(expected);
      expect(messages.map((m) => m.position)).toEqual(range(prompt.length, 60));
    });

    it("a budget stays for later Decode calls until policy none clears it", async () => {
      await prefill("standing", prompt);
      await greedy("standing", 1, { policy: "streaming_llm", maxTokens: 32, decodeSlack: 4 });
      expect(await stats("standing")).toMatchObject({ decodePolicy: "streaming_llm", decodeBudgetTokens: 32 });
      // A later call without eviction keeps compacting.
      const later = await greedy("standing", 12);
      expect(later.some((m) => m.eviction)).toBe(true);
      expect(maxHead(lengthsOf(await stats("standing")))).toBeLessThanOrEqual(36);

      const cleared = await greedy("standing", 10, { policy: "none" });
      expect(cleared.every((m) => !m.eviction)).toBe(true);
      expect(await stats("standing")).toMatchObject({ decodePolicy: "", decodeBudgetTokens: 0 });
      expect(maxHead(lengthsOf(await stats("standing")))).toBeGreaterThan(36);
    });
  });

  describe("query-aware use", () => {
    const QUESTION = "\nWhat did the wind take? The wind took the";
    let question: number[];
    beforeAll(() => {
      question = model.tokenizer.encode(QUESTION);
    });

    it("prefill the document, evict with snapkv, prefill the question, decode", async () => {
      const p = prompt.length;
      await prefill("qa-split", prompt, { policy: "snapkv", maxTokens: C });
      const kept = positionsOf(await stats("qa-split"));
      const response = await prefill("qa-split", question);
      expect(response).toMatchObject({ promptTokens: question.length, position: p + question.length });
      const after = await stats("qa-split");
      // The question's entries follow the kept document entries, at their original positions.
      expect(positionsOf(after)).toEqual(kept.map((heads) => heads.map((held) => [...held, ...range(p, question.length)])));

      const reference = prompted.clone();
      reference.keepPositions(kept);
      reference.feed(question);
      const messages = await greedy("qa-split", NEW_TOKENS);
      expect(messages.map((m) => m.tokenId)).toEqual(reference.greedy(NEW_TOKENS));
      expect(messages.map((m) => m.position)).toEqual(range(p + question.length, NEW_TOKENS));
    });

    it("document and question in one call, with the question as NACL's proxy span", async () => {
      const p = prompt.length;
      const both = [...prompt, ...question];
      const span = { start: p, end: p + question.length };
      const response = await prefill("qa-one", both, { policy: "nacl", maxTokens: C, seed: 3n, proxySpan: span });
      expect(response.eviction).toMatchObject({ applied: true, budgetTokens: C });
      const kept = positionsOf(await stats("qa-one"));
      for (const held of kept.flat()) {
        expect(held).toHaveLength(C);
        expect(held).toEqual(expect.arrayContaining([...range(0, 4), ...range(p, question.length)]));
      }

      const reference = new ReferenceSequence(weights);
      reference.feed(both);
      reference.keepPositions(kept);
      const messages = await greedy("qa-one", NEW_TOKENS);
      expect(messages.map((m) => m.tokenId)).toEqual(reference.greedy(NEW_TOKENS));
      expect(messages.map((m) => m.position)).toEqual(range(both.length, NEW_TOKENS));
    });
  });
});

describe("memory pressure compresses idle sequences with a decode budget, and only those", () => {
  const BUDGET_TOKENS = 32;
  let model: EngineModel;
  let prompt: number[];

  beforeAll(async () => {
    model = await loadTestModel();
    prompt = [model.tokenizer.bosId, ...model.tokenizer.encode(STORY)];
  });

  /** A server holding A (a decode budget whose slack keeps it from running) and B (no budget), both 205 entries per head. */
  async function serverWithAandB(kvBudgetBytes: number): Promise<TestServer> {
    const t = await startTestServer(model, { kvBudgetBytes });
    for (const id of ["A", "B"]) await t.client.prefill({ sequenceId: id, tokenIds: prompt });
    const eviction = { policy: "streaming_llm", maxTokens: BUDGET_TOKENS, decodeSlack: 1000 };
    const messages = await decodeAll(t.client, { sequenceId: "A", maxNewTokens: 1, ignoreEos: true, eviction });
    expect(messages[0].eviction).toBeUndefined();
    return t;
  }

  const snapshot = async (t: TestServer) => {
    const { kvBytesUsed, sequences } = await t.client.stats({ includePositions: true });
    return { kvBytesUsed, sequences: sequences.map(({ idleMs: _idle, ...s }) => s).sort((a, b) => a.sequenceId.localeCompare(b.sequenceId)) };
  };

  /** Bytes of one sequence holding 205 entries per head, and of one compacted to the budget. */
  async function sizes(): Promise<{ full: number; compact: number }> {
    const t = await startTestServer(model);
    try {
      const full = Number((await t.client.prefill({ sequenceId: "s", tokenIds: prompt })).kvBytes);
      const { eviction } = await t.client.evict({ sequenceId: "s", eviction: { policy: "streaming_llm", maxTokens: BUDGET_TOKENS } });
      return { full, compact: Number(eviction!.bytesAfter) };
    } finally {
      await t.close();
    }
  }

  it("a prefill that does not fit compresses A to its budget and never touches B", async () => {
    const { full, compact } = await sizes();
    // Room for A + B + C only once A is compacted.
    const t = await serverWithAandB(2 * full + compact + (full - compact) / 2);
    try {
      const before = await snapshot(t);
      const bStats = before.sequences.find((s) => s.sequenceId === "B")!;
      await t.client.prefill({ sequenceId: "C", tokenIds: prompt });
      const after = await snapshot(t);
      const a = after.sequences.find((s) => s.sequenceId === "A")!;
      expect(lengthsOf(a)).toEqual(Array.from({ length: a.layers.length }, () => Array(a.layers[0].headLengths.length).fill(BUDGET_TOKENS)));
      expect(a).toMatchObject({ position: prompt.length + 1, decodePolicy: "streaming_llm", decodeBudgetTokens: BUDGET_TOKENS });
      expect(after.sequences.find((s) => s.sequenceId === "B")).toEqual(bStats);
      expect(after.kvBytesUsed).toBeLessThanOrEqual(BigInt(Math.ceil(2 * full + compact + (full - compact) / 2)));
    } finally {
      await t.close();
    }
  });

  it("when even that is not enough, RESOURCE_EXHAUSTED with nothing changed", async () => {
    const { full, compact } = await sizes();
    const t = await serverWithAandB(2 * full + compact + (full - compact) / 2);
    try {
      await t.client.prefill({ sequenceId: "C", tokenIds: prompt });
      const before = await snapshot(t);
      const result = await statusOf(t.client.prefill({ sequenceId: "D", tokenIds: prompt }));
      expect(result.code).toBe(status.RESOURCE_EXHAUSTED);
      expect(await snapshot(t)).toEqual(before);
    } finally {
      await t.close();
    }
  });

  it("a prefill too large even after compressing A leaves A whole", async () => {
    const { full, compact } = await sizes();
    const t = await serverWithAandB(2 * full + compact + (full - compact) / 2);
    try {
      const before = await snapshot(t);
      const result = await statusOf(t.client.prefill({ sequenceId: "big", tokenIds: [...prompt, ...prompt] }));
      expect(result.code).toBe(status.RESOURCE_EXHAUSTED);
      expect(await snapshot(t)).toEqual(before);
    } finally {
      await t.close();
    }
  });

  // A decode budget whose plan can no longer run (NACL's proxy span, once its queries have left
  // the recent-query ring) must not fail another sequence's admission with its own error.
  it("a candidate that cannot be compressed is passed over: the prefill gets RESOURCE_EXHAUSTED", async () => {
    const t = await startTestServer(model, { kvBudgetBytes: 1_000_000 });
    try {
      const p = prompt.length;
      await t.client.prefill({ sequenceId: "A", tokenIds: prompt });
      // Slack keeps the budget from running while A decodes past the 64 query rows the server keeps.
      const eviction = { policy: "nacl", maxTokens: BUDGET_TOKENS + 8, proxySpan: { start: p - 20, end: p }, decodeSlack: 1000 };
      expect(await decodeAll(t.client, { sequenceId: "A", maxNewTokens: 70, ignoreEos: true, eviction })).toHaveLength(70);
      const before = await snapshot(t);
      const result = await statusOf(t.client.prefill({ sequenceId: "B", tokenIds: [...prompt, ...prompt] }));
      expect(result.details).not.toContain("proxy_span");
      expect(result.code).toBe(status.RESOURCE_EXHAUSTED);
      expect(await snapshot(t)).toEqual(before);
    } finally {
      await t.close();
    }
  });
});
