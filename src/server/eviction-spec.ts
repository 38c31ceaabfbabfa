import { EngineError } from "../engine/engine-error.js";
import { GroupReduction, Pooling, type EvictionSpec } from "../gen/kvwarden/v1/kvwarden.js";
import type { EvictionSpec as PolicySpec, GroupReduction as PolicyGroupReduction, PolicyParams, Pooling as PolicyPooling } from "../policies/policy.js";

type NumericParam = { [N in keyof PolicyParams]: PolicyParams[N] extends number ? N : never }[keyof PolicyParams];

const POOLINGS: Partial<Record<Pooling, PolicyPooling>> = {
  [Pooling.POOLING_MAX]: "max",
  [Pooling.POOLING_AVG]: "avg",
  [Pooling.POOLING_NONE]: "none",
};

const GROUP_REDUCTIONS: Partial<Record<GroupReduction, PolicyGroupReduction>> = {
  [GroupReduction.GROUP_REDUCTION_MEAN]: "mean",
  [GroupReduction.GROUP_REDUCTION_MAX]: "max",
  [GroupReduction.GROUP_REDUCTION_SUM]: "sum",
};

/** Longest policy name a request may give: longer than any policy's, so that a refusal never quotes a long one. */
const MAX_POLICY_NAME_BYTES = 64;

function checkPolicyName(name: string, field: string): void {
  const bytes = Buffer.byteLength(name);
  if (bytes > MAX_POLICY_NAME_BYTES) {
    throw new EngineError("INVALID_ARGUMENT", `${field} is ${bytes} bytes long; no policy name is longer than ${MAX_POLICY_NAME_BYTES}`);
  }
}

/** The proto EvictionSpec as the policies read it; shape errors name the field. */
export function evictionSpecOf(spec: EvictionSpec): PolicySpec {
  if (spec.policy.length === 0) throw new EngineError("INVALID_ARGUMENT", "eviction.policy is required");
  checkPolicyName(spec.policy, "eviction.policy");
  checkPolicyName(spec.basePolicy, "eviction.base_policy");
  let budget: PolicySpec["budget"];
  if (spec.maxTokens !== undefined) budget = { maxTokens: spec.maxTokens };
  else if (spec.keepFraction !== undefined) budget = { keepFraction: spec.keepFraction };
  else if (spec.policy === "none") budget = { keepFraction: 1 };
  else throw new EngineError("INVALID_ARGUMENT", "eviction needs a budget: set eviction.max_tokens or eviction.keep_fraction");

  const params: Partial<PolicyParams> = {};
  const set = <N extends NumericParam>(name: N, field: string, value: number | undefined, check: (v: number) => boolean, rule: string) => {
    if (value === undefined) return;
    if (!check(value)) throw new EngineError("INVALID_ARGUMENT", `eviction.${field} ${rule}, got ${value}`);
    params[name] = value;
  };
  const count = (v: number) => Number.isInteger(v) && v >= 0 && v <= 1_000_000;
  const countRule = "must be a whole number of tokens up to 1000000";
  set("sinkTokens", "sink_tokens", spec.sinkTokens, count, countRule);
  set("window", "window", spec.window, (v) => count(v) && v > 0, "must be between 1 and 1000000");
  set("kernelSize", "kernel_size", spec.kernelSize, (v) => count(v) && v % 2 === 1, "must be odd");
  set("recentTokens", "recent_tokens", spec.recentTokens, count, countRule);
  set("proxyTokens", "proxy_tokens", spec.proxyTokens, (v) => count(v) && v > 0, "must be between 1 and 1000000");
  set("alpha", "alpha", spec.alpha, (v) => v >= 0 && v <= 1, "must be in [0, 1]");
  set("delta", "delta", spec.delta, (v) => v >= 0 && v <= 1, "must be in [0, 1]");
  // Below 1 the PyramidKV schedule turns upside down (lower layers would keep less).
  set("beta", "beta", spec.beta, (v) => v >= 1 && Number.isFinite(v), "must be at least 1");
  set("temperature", "temperature", spec.temperature, (v) => v >= 0 && Number.isFinite(v), "must be non-negative");
  set("randomShare", "random_share", spec.randomShare, (v) => v >= 0 && v <= 1, "must be in [0, 1]");
  if (spec.pooling !== Pooling.POOLING_UNSPECIFIED) {
    const pooling = POOLINGS[spec.pooling];
    if (!pooling) throw new EngineError("INVALID_ARGUMENT", `eviction.pooling ${spec.pooling} is not a known pooling`);
    params.pooling = pooling;
  }
  if (spec.groupReduction !== GroupReduction.GROUP_REDUCTION_UNSPECIFIED) {
    const reduction = GROUP_REDUCTIONS[spec.groupReduction];
    if (!reduction) throw new EngineError("INVALID_ARGUMENT", `eviction.group_reduction ${spec.groupReduction} is not a known reduction`);
    params.groupReduction = reduction;
  }
  if (spec.proxySpan) {
    const { start, end } = spec.proxySpan;
    if (end <= start) throw new EngineError("INVALID_ARGUMENT", `eviction.proxy_span must have start < end, got [${start}, ${end})`);
    params.proxySpan = { start, end };
  }
  if (spec.skipNoLayers && spec.skipLayers.length > 0) {
    throw new EngineError("INVALID_ARGUMENT", "eviction.skip_no_layers contradicts eviction.skip_layers; give one of them");
  }
  if (spec.skipLayers.length > 0) params.skipLayers = [...spec.skipLayers];
  if (spec.skipNoLayers) params.skipLayers = [];
  if (spec.basePolicy !== "") params.basePolicy = spec.basePolicy;
  if (spec.keepHighestNorm !== undefined) params.keepHighestNorm = spec.keepHighestNorm;
  if (spec.decodeSlack !== undefined && !count(spec.decodeSlack)) {
    throw new EngineError("INVALID_ARGUMENT", `eviction.decode_slack ${countRule}, got ${spec.decodeSlack}`);
  }
  return { policy: spec.policy, budget, seed: spec.seed === undefined ? undefined : BigInt(spec.seed), params, decodeSlack: spec.decodeSlack };
}
