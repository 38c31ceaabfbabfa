import { runToEnd } from "../../../src/numerics/sliced-work.js";
import type { CacheView, EvictionSpec, Policy, PolicyParams, PolicyPlan } from "../../../src/policies/policy.js";

/** One KV head of a test layer; positions default to 0..T-1 and mass to zeros. */
export interface HeadInput {
  keys: number[][];
  positions?: number[];
  mass?: number[];
}

export interface CacheInput {
  /** Query heads (a multiple of the KV heads each layer lists). */
  heads: number;
  /** [layer][kvHead]. */
  layers: HeadInput[][];
  /** Recent query rows, oldest first: their positions and, per layer and query head, one vector per row. */
  queries?: { positions: number[]; layers: number[][][][] };
}

/** Slots past a head's length hold poison (NaN keys and mass, position -1), so reading them shows up. */
const SPARE_SLOTS = 2;

/**
 * A CacheView laid out as the store lays out a ragged layer: each head a run of its own length plus
 * spare slots, one after another ([slots(, d)] per layer); queries [Hq, R, d] per layer.
 */
export function cacheView(input: CacheInput): CacheView {
  const kvHeads = input.layers[0].length;
  const headSize = input.layers[0][0].keys[0].length;
  const layers = input.layers.map((heads) => {
    const offsets = new Int32Array(kvHeads);
    for (let h = 1; h < kvHeads; h++) offsets[h] = offsets[h - 1] + heads[h - 1].keys.length + SPARE_SLOTS;
    const slots = offsets[kvHeads - 1] + heads[kvHeads - 1].keys.length + SPARE_SLOTS;
    const positions = new Int32Array(slots).fill(-1);
    const keys = new Float32Array(slots * headSize).fill(NaN);
    const mass = new Float32Array(slots).fill(NaN);
    heads.forEach((head, h) => {
      head.keys.forEach((key, slot) => {
        positions[offsets[h] + slot] = head.positions?.[slot] ?? slot;
        keys.set(key, (offsets[h] + slot) * headSize);
        mass[offsets[h] + slot] = head.mass?.[slot] ?? 0;
      });
    });
    return { lengths: Int32Array.from(heads, (head) => head.keys.length), offsets, positions, keys, mass };
  });
  const rows = input.queries?.positions ?? [];
  const fed = Math.max(0, ...input.layers.flat().flatMap((head) => head.positions ?? head.keys.map((_, slot) => slot))) + 1;
  return {
    shape: { layers: input.layers.length, heads: input.heads, kvHeads, headSize },
    layers,
    recentQueries: {
      count: rows.length,
      positions: Int32Array.from(rows),
      layers: input.layers.map((_, l) => Float32Array.from((input.queries?.layers[l] ?? []).flat(2))),
    },
    position: fed,
  };
}

/** A head of T entries at positions 0..T-1 whose one-dimensional keys are `values`. */
export function scalarKeys(values: number[]): HeadInput {
  return { keys: values.map((v) => [v]) };
}

export function evictionSpec(policy: string, params: Partial<PolicyParams> = {}, seed?: bigint): EvictionSpec {
  return { policy, budget: { maxTokens: 1 }, params, seed };
}

/** A plan's keep sets as plain arrays, [layer][kvHead][kept slot]. */
export function kept(plan: PolicyPlan): number[][][] {
  return plan.keep.map((heads) => heads.map((slots) => Array.from(slots)));
}

/** Softmax attention of one query over the keys at positions <= rowPosition (0 elsewhere), written out plainly. */
export function naiveAttention(query: number[], keys: number[][], keyPositions: number[], rowPosition: number): number[] {
  const scale = 1 / Math.sqrt(query.length);
  const logits = keys.map((key, j) => (keyPositions[j] <= rowPosition ? key.reduce((sum, k, i) => sum + k * query[i], 0) * scale : -Infinity));
  const max = Math.max(...logits);
  const weights = logits.map((logit) => Math.exp(logit - max));
  const total = weights.reduce((a, b) => a + b, 0);
  return weights.map((w) => w / total);
}

/** A policy's plan worked out at once (the engine runs it in slices between event-loop turns). */
export function planNow(policy: Policy, cache: CacheView, budget: (entries: number) => number, spec: EvictionSpec): PolicyPlan {
  return runToEnd(policy.plan(cache, budget, spec));
}
