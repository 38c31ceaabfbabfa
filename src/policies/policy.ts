/** A request's eviction settings, as the policies read them (proto-independent). */
export interface EvictionSpec {
  policy: string;
  budget: { maxTokens: number } | { keepFraction: number };
  /** Seed for random draws; absent = the engine picks one. */
  seed?: bigint;
  /** Typed optional parameters; absent = the policy's default. */
  params: Partial<PolicyParams>;
  /** Decode budgets only: entries a head may grow past the budget before the policy runs again. */
  decodeSlack?: number;
}

export type Pooling = "max" | "avg" | "none";
export type GroupReduction = "mean" | "max" | "sum";

export interface PolicyParams {
  sinkTokens: number;
  window: number;
  kernelSize: number;
  pooling: Pooling;
  recentTokens: number;
  alpha: number;
  delta: number;
  beta: number;
  proxyTokens: number;
  /** Half-open range of original positions [start, end) used as NACL's proxy queries. */
  proxySpan: { start: number; end: number };
  temperature: number;
  /** NACL: share of the unprotected budget drawn at random. */
  randomShare: number;
  groupReduction: GroupReduction;
  skipLayers: number[];
  /** The policy adakv wraps: "snapkv" or "pyramidkv". */
  basePolicy: string;
  /** knorm's ablation: keep the highest-norm keys. */
  keepHighestNorm: boolean;
}

export type ParamName = keyof PolicyParams;

/** Model dimensions a policy needs. */
export interface CacheShape {
  layers: number;
  heads: number;
  kvHeads: number;
  headSize: number;
}

/** One layer of a sequence's cache, read-only, as policies see it. */
export interface LayerView {
  /** Entries per KV head. */
  readonly lengths: Int32Array;
  /** Slot where each head's entries start in the arrays below: head h holds slots offsets[h] to offsets[h] + lengths[h]. */
  readonly offsets: Int32Array;
  /** Original positions [slots], ascending per head. */
  readonly positions: Int32Array;
  /** Post-RoPE keys [slots, d]. */
  readonly keys: Float32Array;
  /** Attention each entry has received since it was cached, summed over every query row and
   * the query heads of its group [slots] (H2O's accumulated score). */
  readonly mass: Float32Array;
}

/** Post-RoPE queries of the sequence's most recent tokens (oldest first), kept for attention scorers. */
export interface RecentQueries {
  /** Number of rows R held (at most what the engine keeps). */
  readonly count: number;
  /** Original position of each row [R]. */
  readonly positions: Int32Array;
  /** Per layer, [Hq, R, d]. */
  readonly layers: readonly Float32Array[];
}

/** Everything a policy may read about one sequence. */
export interface CacheView {
  readonly shape: CacheShape;
  readonly layers: readonly LayerView[];
  readonly recentQueries: RecentQueries;
  /** Tokens fed to the sequence so far. */
  readonly position: number;
}

/** Per layer, per KV head: the slots to keep, ascending. */
export type KeepPlan = Int32Array[][];

export interface PolicyPlan {
  keep: KeepPlan;
  /** Layers judged lazy (SimLayerKV). */
  lazyLayers?: number[];
}

export interface ParameterDoc {
  name: ParamName;
  description: string;
  /** The default; where it depends on the request (h2o's recent_tokens is floor(C/2)), the rule in
   * words, and the policy then reads that parameter from the request itself, never through paramOf. */
  defaultValue: PolicyParams[ParamName];
  /** The only values a string parameter takes, checked before the policy runs. */
  choices?: readonly string[];
}

/** Entries a policy keeps whatever the budget (sinks, an observation window), sized by the request's parameters. */
export type ProtectedPart = (policy: Policy, params: Partial<PolicyParams>) => number;

/** A named eviction method: a declaration over a scorer, an allocator and a selector. */
export interface Policy {
  readonly name: string;
  readonly description: string;
  readonly parameters: readonly ParameterDoc[];
  /** Decode-time slack when the request gives none: 0 for policies meant to run every step. */
  readonly defaultDecodeSlack: number;
  /**
   * Most recent query rows the policy reads (0 when it reads none); `position`, the tokens fed when it
   * runs, where the rows depend on it (a NACL proxy span reads from its start to there).
   */
  queryRowsNeeded(params: Partial<PolicyParams>, position?: number): number;
  /** Whether plan() reads the cached keys: a device-resident cache reads them back before planning. */
  readonly readsKeys: boolean;
  /** What the policy always keeps; the smallest budget it accepts holds these and one more (minimumBudget). */
  readonly protectedParts: readonly ProtectedPart[];
  /**
   * Which entries to keep; `budget(T)` is C for a head holding T entries. Pure: no I/O. Worked out
   * layer by layer, yielding after each (eachLayer; attention scores also after each query head,
   * eachLayerInSteps), so that the engine can answer other calls between the slices of a long plan
   * (runInSlices in src/numerics/sliced-work.ts); runToEnd runs it at once.
   */
  plan(cache: CacheView, budget: (entries: number) => number, spec: EvictionSpec): Generator<void, PolicyPlan>;
}

/** `layers.map(work)`, yielding after each layer: how a policy plans (Policy.plan). */
export function eachLayer<T>(layers: readonly LayerView[], work: (layer: LayerView, l: number) => T): Generator<void, T[]> {
  return eachLayerInSteps(layers, function* (layer, l) {
    return work(layer, l);
  });
}

/**
 * As eachLayer, for work that yields between steps of its own (attention scores, a query head at a
 * time): on a large model one layer's scoring is far longer than a slice of the event loop.
 */
export function* eachLayerInSteps<T>(layers: readonly LayerView[], work: (layer: LayerView, l: number) => Generator<void, T>): Generator<void, T[]> {
  const results: T[] = [];
  for (let l = 0; l < layers.length; l++) {
    results.push(yield* work(layers[l], l));
    yield;
  }
  return results;
}

/** A request that names an impossible eviction; `field` is the offending request field. */
export class InvalidEvictionError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

/** The value of a parameter for this request, or the policy's documented default. */
export function paramOf<N extends ParamName>(policy: Policy, params: Partial<PolicyParams>, name: N): PolicyParams[N] {
  const given = params[name];
  if (given !== undefined) return given;
  const doc = policy.parameters.find((p) => p.name === name);
  if (!doc) throw new Error(`${policy.name} has no parameter ${name}`);
  return doc.defaultValue as PolicyParams[N];
}
