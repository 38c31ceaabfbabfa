/** A request's eviction settings, as the policies read them (proto-independent). */
export interface EvictionSpec {
  policy: string;
  budget: { maxTokens: number } | { keepFraction: number };
  seed?: bigint;
  /** Typed optional parameters; absent = the policy's default. */
  params: Partial<PolicyParams>;
}

export interface PolicyParams {
  sinkTokens: number;
  window: number;
  kernelSize: number;
  recentTokens: number;
  alpha: number;
  delta: number;
  beta: number;
  proxyTokens: number;
  temperature: number;
}

export type ParamName = keyof PolicyParams;

/** One layer of a sequence's cache, read-only, as policies see it. */
export interface LayerView {
  /** Entries per KV head. */
  readonly lengths: Int32Array;
  readonly capacity: number;
  /** Original positions, [Hkv, capacity]; head h's entries are its first lengths[h] slots. */
  readonly positions: Int32Array;
}

/** Per layer, per KV head: the slots to keep, ascending. */
export type KeepPlan = Int32Array[][];

export interface ParameterDoc {
  name: ParamName;
  description: string;
  defaultValue: number;
}

/** A named eviction method: a declaration over a scorer, an allocator and a selector. */
export interface Policy {
  readonly name: string;
  readonly description: string;
  readonly parameters: readonly ParameterDoc[];
  /** The smallest budget C the policy accepts with these parameters. */
  minimumBudget(params: Partial<PolicyParams>): number;
  /** Which entries to keep; `budget(T)` is C for a head holding T entries. */
  plan(layers: readonly LayerView[], budget: (entries: number) => number, spec: EvictionSpec): KeepPlan;
}

/** A request that names an impossible eviction; `field` is the offending field. */
export class InvalidEvictionError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

/** The value of a parameter for this request, or its documented default. */
export function paramOf(policy: Policy, params: Partial<PolicyParams>, name: ParamName): number {
  const given = params[name];
  if (given !== undefined) return given;
  const doc = policy.parameters.find((p) => p.name === name);
  if (!doc) throw new Error(`${policy.name} has no parameter ${name}`);
  return doc.defaultValue;
}
