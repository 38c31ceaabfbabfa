import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { pyramidBudget } from "../../src/policies/allocators/pyramid.js";
import { budgetFor } from "../../src/policies/budget.js";
import {
  InvalidEvictionError,
  paramOf,
  type CacheView,
  type EvictionSpec,
  type PolicyParams,
  type PolicyPlan,
} from "../../src/policies/policy.js";
import { minimumBudget } from "../../src/policies/protected-parts.js";
import { POLICIES, resolveEviction } from "../../src/policies/registry.js";
import { cacheView, type HeadInput, planNow } from "./support/cache-view.js";

/**
 * Property tests over every registered policy: for random shapes, ragged heads,
 * budgets, parameters, keys, queries, attention mass and seeds, a request is
 * either refused with InvalidEvictionError or planned into a keep set that is
 * well formed, keeps what the policy protects and keeps as many entries as
 * the budget rule says.
 */

const RUNS = 300;

/** Everything one case is made of; the numbers come from `dataSeed` so shrinking acts on the shape. */
interface CaseInput {
  layers: number;
  kvHeads: number;
  group: number;
  headSize: number;
  /** Tokens ever fed: positions are 0..fed-1. */
  fed: number;
  /** Heads hold different positions (as after AdaKV or KNorm) rather than all the same ones. */
  ragged: boolean;
  /** Share of positions a head still holds (the most recent `tail` are always held); ragged heads hold less. */
  density: number;
  tail: number;
  /** Recent query rows the server keeps (--recent-queries); the sequence holds min(this, fed). */
  queryCapacity: number;
  /** Values are rounded to 1/levels, so small levels make many ties. */
  levels: number;
  dataSeed: number;
  budget: { overMinimum: number } | { keepFraction: number };
  params: Partial<PolicyParams>;
  seed: bigint;
}

interface Case {
  input: CaseInput;
  spec: EvictionSpec;
  view: CacheView;
}

/**
 * Valid values for every parameter a policy may take. The proxy span is drawn
 * as { start: length - 1, end: distance from the last position } and placed by
 * buildCase, so that most spans fall on query rows the sequence holds.
 */
const PARAMETER_VALUES: { [N in keyof PolicyParams]: fc.Arbitrary<PolicyParams[N]> } = {
  sinkTokens: fc.integer({ min: 0, max: 8 }),
  window: fc.integer({ min: 1, max: 12 }),
  kernelSize: fc.constantFrom(1, 3, 5, 7),
  pooling: fc.constantFrom("max", "avg", "none"),
  recentTokens: fc.integer({ min: 0, max: 12 }),
  alpha: fc.double({ min: 0, max: 1, noNaN: true }),
  delta: fc.double({ min: 0, max: 1, noNaN: true }),
  beta: fc.double({ min: 0.5, max: 40, noNaN: true }),
  proxyTokens: fc.integer({ min: 1, max: 12 }),
  proxySpan: fc.record({ start: fc.integer({ min: 0, max: 14 }), end: fc.integer({ min: 0, max: 3 }) }),
  temperature: fc.double({ min: 0, max: 3, noNaN: true }),
  randomShare: fc.oneof(fc.constant(0), fc.double({ min: 0, max: 1, noNaN: true }), fc.constant(1)),
  groupReduction: fc.constantFrom("mean", "max", "sum"),
  skipLayers: fc.uniqueArray(fc.integer({ min: 0, max: 2 }), { maxLength: 3 }),
  basePolicy: fc.constantFrom("snapkv", "pyramidkv"),
  keepHighestNorm: fc.boolean(),
};

function caseArbitrary(policyName: string): fc.Arbitrary<Case> {
  const policy = POLICIES.get(policyName)!;
  const params = Object.fromEntries(policy.parameters.map((p) => [p.name, PARAMETER_VALUES[p.name]]));
  return fc
    .record({
      layers: fc.integer({ min: 1, max: 3 }),
      kvHeads: fc.integer({ min: 1, max: 3 }),
      group: fc.integer({ min: 1, max: 2 }),
      headSize: fc.integer({ min: 1, max: 4 }),
      fed: fc.integer({ min: 1, max: 96 }),
      ragged: fc.boolean(),
      density: fc.double({ min: 0.2, max: 1, noNaN: true }),
      tail: fc.integer({ min: 0, max: 24 }),
      queryCapacity: fc.oneof(fc.integer({ min: 1, max: 64 }), fc.constant(64)),
      levels: fc.constantFrom(1, 4, 1000),
      dataSeed: fc.integer(),
      budget: fc.oneof(
        // Mostly at or above the policy's minimum (computed once the parameters are known), sometimes just below.
        fc.record({ overMinimum: fc.integer({ min: -3, max: 30 }) }),
        fc.record({
          keepFraction: fc.oneof(fc.double({ min: 0.02, max: 0.5, noNaN: true }), fc.double({ min: 0.02, max: 1, noNaN: true }), fc.constant(1)),
        }),
      ),
      params: fc.record(params, { requiredKeys: [] }) as fc.Arbitrary<Partial<PolicyParams>>,
      seed: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    })
    .map((input) => buildCase(policyName, input));
}

/** A small deterministic generator for the bulk numbers (xorshift32). */
function numbers(seed: number): () => number {
  let state = seed | 0 || 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
}

function buildCase(policy: string, input: CaseInput): Case {
  const next = numbers(input.dataSeed);
  const value = (scale: number) => Math.round((next() * 2 - 1) * scale * input.levels) / input.levels;
  const heldPositions = (density: number) => {
    const held = Array.from({ length: input.fed }, (_, p) => p).filter((p) => p >= input.fed - input.tail || next() < density);
    return held.length > 0 ? held : [input.fed - 1];
  };
  const shared = heldPositions(input.density);
  const layers: HeadInput[][] = Array.from({ length: input.layers }, () =>
    Array.from({ length: input.kvHeads }, () => {
      // Ragged heads differ in length too, so a keep_fraction gives them different budgets.
      const positions = input.ragged ? heldPositions(input.density * next() ** 2) : shared;
      return {
        positions,
        keys: positions.map(() => Array.from({ length: input.headSize }, () => value(3))),
        mass: positions.map(() => Math.abs(value(5))),
      };
    }),
  );
  const heads = input.kvHeads * input.group;
  const rows = Math.min(input.queryCapacity, input.fed);
  const rowPositions = Array.from({ length: rows }, (_, i) => input.fed - rows + i);
  const queries = {
    positions: rowPositions,
    layers: layers.map(() =>
      Array.from({ length: heads }, () => rowPositions.map(() => Array.from({ length: input.headSize }, () => value(3)))),
    ),
  };
  const params = { ...input.params };
  if (params.proxySpan) {
    const end = Math.max(1, input.fed - params.proxySpan.end);
    params.proxySpan = { start: Math.max(0, end - 1 - params.proxySpan.start), end };
  }
  const minimum = minimumBudget(POLICIES.get(policy)!, params);
  const budget = "overMinimum" in input.budget ? { maxTokens: Math.max(1, minimum + input.budget.overMinimum) } : input.budget;
  const spec: EvictionSpec = { policy, budget, params, seed: input.seed };
  return { input, spec, view: { ...cacheView({ heads, layers, queries }), position: input.fed } };
}

/** Everything a plan could change if it were not pure. */
function contents(view: CacheView): string {
  const { recentQueries } = view;
  const arrays = [...view.layers.flatMap((l) => [l.lengths, l.positions, l.keys, l.mass]), recentQueries.positions, ...recentQueries.layers];
  return arrays.map((a) => Array.from(a as ArrayLike<number>).join(",")).join("|");
}

/** The plan's rows for one head with the head's data. */
interface HeadCheck {
  layer: number;
  head: number;
  /** Entries T. */
  entries: number;
  /** C(T). */
  budget: number;
  positions: number[];
  kept: number[];
  dropped: number[];
}

function heads(view: CacheView, plan: PolicyPlan, budget: (entries: number) => number): HeadCheck[][] {
  return view.layers.map((layer, l) =>
    Array.from(layer.lengths, (entries, h) => {
      const positions = Array.from(layer.positions.subarray(layer.offsets[h], layer.offsets[h] + entries));
      const kept = Array.from(plan.keep[l][h]);
      const keptSet = new Set(kept);
      const dropped = positions.map((_, s) => s).filter((s) => !keptSet.has(s));
      return { layer: l, head: h, entries, budget: budget(entries), positions, kept, dropped };
    }),
  );
}

/** Slots of a head that satisfy `test`. */
const slotsWhere = (head: HeadCheck, test: (slot: number) => boolean) => head.positions.map((_, s) => s).filter(test);

function expectKeeps(head: HeadCheck, slots: number[], what: string): void {
  const kept = new Set(head.kept);
  const missing = slots.filter((s) => !kept.has(s));
  expect(missing, `layer ${head.layer} head ${head.head} dropped ${what} ${missing.join(",")}`).toEqual([]);
}

/**
 * The count for a uniform policy: exactly min(T, C), never zero. The one
 * exception: a keep_fraction gives a short head a smaller C than the longest
 * head the minimum was judged against, and where that C is below the head's
 * protected entries, all of those are kept (protection wins over the budget).
 */
function expectUniformCount(head: HeadCheck, protectedCount: number, spec: EvictionSpec): void {
  const target = Math.max(1, Math.min(head.entries, head.budget));
  const expected = protectedCount > target ? protectedCount : target;
  if ("maxTokens" in spec.budget) expect(protectedCount, "with max_tokens protected entries fit the budget").toBeLessThanOrEqual(target);
  expect(head.kept.length, `layer ${head.layer} head ${head.head}: T=${head.entries} C=${head.budget} protected=${protectedCount}`).toBe(expected);
}

/** The last `count` slots of a head (the most recent entries). */
const lastSlots = (head: HeadCheck, count: number) => slotsWhere(head, (s) => s >= head.entries - count);

/** Slots in SnapKV's observation window: positions from the W-th last query row on. */
function windowSlots(view: CacheView, head: HeadCheck, window: number): number[] {
  const first = view.recentQueries.positions[view.recentQueries.count - window];
  return slotsWhere(head, (s) => head.positions[s] >= first);
}

/** Kept scores beat dropped ones, ties to the lower slot. */
function expectRanked(head: HeadCheck, score: (slot: number) => number, candidates: Set<number>, what: string): void {
  const kept = head.kept.filter((s) => candidates.has(s));
  const dropped = head.dropped.filter((s) => candidates.has(s));
  for (const k of kept) {
    for (const d of dropped) {
      const better = score(k) > score(d) || (score(k) === score(d) && k < d);
      expect(better, `layer ${head.layer} head ${head.head}: kept slot ${k} (${what} ${score(k)}) over slot ${d} (${score(d)})`).toBe(true);
    }
  }
}

type Rule = (c: Case, heads: HeadCheck[][], plan: PolicyPlan) => void;

const sinkRule =
  (name: string): Rule =>
  (c, layers) => {
    const sinks = paramOf(POLICIES.get(name)!, c.spec.params, "sinkTokens");
    for (const head of layers.flat()) {
      const entries = head.entries <= head.budget ? head.positions.map((_, s) => s) : slotsWhere(head, (s) => s < sinks);
      expectKeeps(head, entries, "sink");
      expectUniformCount(head, Math.min(sinks, head.entries), c.spec);
    }
  };

/** For streaming_llm and SimLayerKV's lazy layers: exactly the sinks and the most recent entries. */
function expectSinksAndRecent(head: HeadCheck, sinks: number): void {
  const sinkCount = Math.min(sinks, head.entries);
  const recent = Math.max(0, Math.max(1, Math.min(head.entries, head.budget)) - sinkCount);
  expect(head.kept).toEqual(slotsWhere(head, (s) => s < sinkCount || s >= Math.max(sinkCount, head.entries - recent)));
}

/** Per-head layer budget of the SnapKV family (PyramidKV's schedule, or C itself). */
function layerBudget(c: Case, head: HeadCheck, pyramid: boolean): number {
  const policy = POLICIES.get(c.spec.policy)!;
  if (!pyramid) return head.budget;
  const window = paramOf(policy, c.spec.params, "window");
  return pyramidBudget(head.entries, head.budget, window, paramOf(policy, c.spec.params, "beta"), head.layer, c.view.layers.length);
}

const snapkvFamilyRule =
  (pyramid: boolean): Rule =>
  (c, layers) => {
    const window = paramOf(POLICIES.get(c.spec.policy)!, c.spec.params, "window");
    for (const head of layers.flat()) {
      const protectedSlots = windowSlots(c.view, head, window);
      expectKeeps(head, protectedSlots, "window entry");
      const budget = layerBudget(c, head, pyramid);
      expectUniformCount({ ...head, budget }, protectedSlots.length, c.spec);
    }
  };

const RULES: Record<string, Rule> = {
  none: (_, layers) => {
    for (const head of layers.flat()) expect(head.kept).toEqual(head.positions.map((_, s) => s));
  },

  streaming_llm: (c, layers, plan) => {
    sinkRule("streaming_llm")(c, layers, plan);
    const sinks = paramOf(POLICIES.get("streaming_llm")!, c.spec.params, "sinkTokens");
    for (const head of layers.flat()) expectSinksAndRecent(head, sinks);
  },

  snapkv: snapkvFamilyRule(false),

  // The schedule itself is checked below and in pyramidkv.test.ts; here, that it is what each head keeps.
  pyramidkv: snapkvFamilyRule(true),

  adakv: (c, layers) => {
    const policy = POLICIES.get("adakv")!;
    const window = paramOf(policy, c.spec.params, "window");
    const alpha = paramOf(policy, c.spec.params, "alpha");
    const pyramid = paramOf(policy, c.spec.params, "basePolicy") === "pyramidkv";
    for (const layer of layers) {
      let selected = 0;
      let shared = 0;
      let competing = 0;
      let windowless = 0;
      for (const head of layer) {
        const windowCount = windowSlots(c.view, head, window).length;
        expectKeeps(head, windowSlots(c.view, head, window), "window entry");
        const budget = layerBudget(c, head, pyramid);
        // A head within its layer budget keeps everything and does not compete.
        if (head.entries <= budget) {
          expect(head.kept.length).toBe(head.entries);
          continue;
        }
        const uniformShare = Math.max(0, budget - windowCount);
        const ownSelected = head.kept.length - windowCount;
        // AdaKV's floor: at least floor(alpha * B) selected entries, whatever the competition.
        expect(ownSelected).toBeGreaterThanOrEqual(Math.min(head.entries - windowCount, Math.floor(alpha * uniformShare)));
        selected += ownSelected;
        shared += uniformShare;
        competing++;
        if (windowCount === 0) windowless++;
      }
      // The layer total: the competing heads share sum(B) selections, give or take AdaKV's
      // per-head rounding (round(c(1-a) + floor(aB)) loses under 1.5 and gains at most 0.5 a head,
      // and a head with no window and no share still keeps one entry).
      expect(selected, `layer total of ${competing} competing heads`).toBeLessThanOrEqual(shared + competing / 2 + windowless);
      expect(selected, `layer total of ${competing} competing heads`).toBeGreaterThanOrEqual(shared - 1.5 * competing);
    }
  },

  nacl: (c, layers) => {
    const policy = POLICIES.get("nacl")!;
    const sinks = paramOf(policy, c.spec.params, "sinkTokens");
    const { proxySpan } = c.spec.params;
    const rows = c.view.recentQueries;
    const proxies = new Set(
      proxySpan
        ? Array.from({ length: proxySpan.end - proxySpan.start }, (_, i) => proxySpan.start + i)
        : Array.from(rows.positions.subarray(rows.count - paramOf(policy, c.spec.params, "proxyTokens"))),
    );
    for (const head of layers.flat()) {
      const protectedSlots = slotsWhere(head, (s) => s < sinks || proxies.has(head.positions[s]));
      expectKeeps(head, protectedSlots, "sink or proxy entry");
      expectUniformCount(head, head.entries <= head.budget ? 0 : protectedSlots.length, c.spec);
    }
  },

  knorm: (c, layers) => {
    const skip = paramOf(POLICIES.get("knorm")!, c.spec.params, "skipLayers");
    const highest = paramOf(POLICIES.get("knorm")!, c.spec.params, "keepHighestNorm");
    const sinks = paramOf(POLICIES.get("knorm")!, c.spec.params, "sinkTokens");
    const { headSize } = c.view.shape;
    for (const head of layers.flat()) {
      if (skip.includes(head.layer)) {
        expect(head.kept.length, `skipped layer ${head.layer} keeps everything`).toBe(head.entries);
        continue;
      }
      const sinkSlots = slotsWhere(head, (s) => s < sinks);
      expectKeeps(head, sinkSlots, "sink entry");
      expectUniformCount(head, sinkSlots.length, c.spec);
      const view = c.view.layers[head.layer];
      const norm = (slot: number) => {
        let squares = 0;
        for (let i = 0; i < headSize; i++) squares += view.keys[(view.offsets[head.head] + slot) * headSize + i] ** 2;
        return highest ? Math.sqrt(squares) : -Math.sqrt(squares);
      };
      expectRanked(head, norm, new Set(head.positions.map((_, s) => s).filter((s) => s >= sinks)), highest ? "key norm (keep_highest_norm)" : "minus key norm");
    }
  },

  simlayerkv: (c, layers, plan) => {
    const sinks = paramOf(POLICIES.get("simlayerkv")!, c.spec.params, "sinkTokens");
    const lazy = plan.lazyLayers ?? [];
    const valid = [...new Set(lazy)].sort((a, b) => a - b).filter((l) => l >= 0 && l < layers.length);
    expect(lazy, "lazy layers ascending, distinct, in range").toEqual(valid);
    for (const head of layers.flat()) {
      if (!lazy.includes(head.layer)) {
        expect(head.kept.length, `layer ${head.layer} is not lazy and keeps everything`).toBe(head.entries);
        continue;
      }
      expectUniformCount(head, Math.min(sinks, head.entries), c.spec);
      expectSinksAndRecent(head, sinks);
    }
  },

  h2o: (c, layers) => {
    for (const head of layers.flat()) {
      const recent = c.spec.params.recentTokens ?? Math.floor(head.budget / 2);
      const protectedSlots = lastSlots(head, recent);
      expectKeeps(head, protectedSlots, "recent entry");
      expectUniformCount(head, protectedSlots.length, c.spec);
      const view = c.view.layers[head.layer];
      const heavy = new Set(slotsWhere(head, (s) => s < head.entries - recent));
      expectRanked(head, (s) => view.mass[view.offsets[head.head] + s], heavy, "accumulated attention");
    }
  },

  tova: (c, layers) => {
    for (const layer of layers) {
      const union = new Set(layer.flatMap((head) => head.positions));
      const keptUnion = new Set(layer.flatMap((head) => head.kept.map((s) => head.positions[s])));
      const count = Math.min(union.size, budgetFor(c.spec)(union.size));
      for (const head of layer) expect(head.kept.length).toBeGreaterThan(0);
      // One position set per layer; a head holding none of it keeps its own best entry instead.
      expect(keptUnion.size).toBeGreaterThanOrEqual(count);
      expect(keptUnion.size).toBeLessThanOrEqual(count + layer.length);
      if (!c.input.ragged) {
        for (const head of layer) {
          expect(head.kept, "heads holding the same positions keep the same ones").toEqual(layer[0].kept);
          expectUniformCount(head, 0, c.spec);
        }
      }
    }
  },

  random: sinkRule("random"),
};

/** The plan may refuse only what the sequence cannot give it: the query rows it reads. */
function missingRows(c: Case): boolean {
  const policy = POLICIES.get(c.spec.policy)!;
  const rows = c.view.recentQueries;
  const span = c.spec.params.proxySpan;
  if (span && c.spec.policy === "nacl") return span.start < rows.positions[0] || span.end > rows.positions[rows.count - 1] + 1;
  return rows.count < policy.queryRowsNeeded(c.spec.params);
}

type Outcome = "refused" | "rows missing" | "planned";

function runCase(c: Case): Outcome {
  const policy = POLICIES.get(c.spec.policy)!;
  const longest = Math.max(...c.view.layers.flatMap((l) => Array.from(l.lengths)));
  let budget: (entries: number) => number;
  try {
    budget = resolveEviction(c.spec, longest, c.input.queryCapacity).budget;
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidEvictionError);
    return "refused";
  }
  const before = contents(c.view);
  let plan: PolicyPlan;
  try {
    plan = planNow(policy, c.view, budget, c.spec);
  } catch (error) {
    if (error instanceof InvalidEvictionError && missingRows(c)) return "rows missing";
    // A request's own skip_layers may not name a layer the model lacks.
    if (error instanceof InvalidEvictionError && c.spec.params.skipLayers?.some((l) => l >= c.view.layers.length)) return "refused";
    throw error;
  }
  expect(contents(c.view), "plan() is pure").toBe(before);
  expect(plan.keep).toHaveLength(c.view.layers.length);
  const checks = heads(c.view, plan, budget);
  for (const head of checks.flat()) {
    expect(plan.keep[head.layer]).toHaveLength(c.view.shape.kvHeads);
    const slots = plan.keep[head.layer][head.head];
    expect(slots).toBeInstanceOf(Int32Array);
    // Ascending (so no duplicates), existing slots only, never an emptied head.
    const wellFormed = head.kept.every((s, i) => Number.isInteger(s) && s >= 0 && s < head.entries && (i === 0 || s > head.kept[i - 1]));
    expect(wellFormed, `layer ${head.layer} head ${head.head}: ${head.kept}`).toBe(true);
    expect(head.kept.length).toBeGreaterThan(0);
  }
  RULES[c.spec.policy](c, checks, plan);
  // Same request, same seed: same plan (random draws included).
  expect(planNow(policy, c.view, budget, c.spec).keep).toEqual(plan.keep);
  return "planned";
}

describe("every policy, on random caches", () => {
  it("has a rule here for each registered policy", () => {
    expect(Object.keys(RULES).sort()).toEqual([...POLICIES.keys()].sort());
  });

  it.each([...POLICIES.keys()])("%s either refuses with InvalidEvictionError or keeps a valid plan", (name) => {
    const outcomes: Record<Outcome, number> = { refused: 0, "rows missing": 0, planned: 0 };
    fc.assert(
      fc.property(caseArbitrary(name), (c) => {
        outcomes[runCase(c)]++;
      }),
      { numRuns: RUNS },
    );
    // The generators must mostly produce plannable requests, or the rules above test little.
    expect(outcomes.planned, JSON.stringify(outcomes)).toBeGreaterThan(RUNS / 4);
  });
});

describe("pyramidBudget, on random shapes", () => {
  it("falls with depth, stays within [W, T] and averages C up to integer rounding", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 40 }),
        fc.integer({ min: 1, max: 64 }),
        fc.integer({ min: 1, max: 400 }),
        fc.integer({ min: 0, max: 4000 }),
        // beta < 1 makes min_num exceed max_num, which turns the pyramid upside down; PyramidKV takes beta >= 1.
        fc.double({ min: 1, max: 40, noNaN: true }),
        (layers, window, selected, extra, beta) => {
          // The pyramid applies from T >= 2(C - W) on, with C >= W + 1.
          const budget = window + selected;
          const entries = Math.max(budget + 1, 2 * selected) + extra;
          const budgets = Array.from({ length: layers }, (_, l) => pyramidBudget(entries, budget, window, beta, l, layers));
          budgets.forEach((b, l) => {
            expect(b).toBeGreaterThanOrEqual(window);
            expect(b).toBeLessThanOrEqual(entries);
            if (l > 0) expect(b).toBeLessThanOrEqual(budgets[l - 1]);
          });
          // The integer step rounds down, so the layers hold a little more than L * C, never less.
          const total = budgets.reduce((a, b) => a + b, 0);
          expect(total).toBeGreaterThanOrEqual(layers * budget);
          expect(total).toBeLessThan(layers * budget + (layers * (layers - 1)) / 2);
        },
      ),
      { numRuns: RUNS },
    );
  });
});
