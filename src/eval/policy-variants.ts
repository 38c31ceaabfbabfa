import { status, type ServiceError } from "@grpc/grpc-js";
import { groupReductionToJSON, poolingToJSON, type EvictionSpec, type GroupReduction, type InfoResponse, type Pooling } from "../gen/kvwarden/v1/kvwarden.js";
import { snakeCase } from "../policies/registry.js";
import type { DeepPartial } from "../gen/kvwarden/v1/kvwarden.js";

/** Eviction parameters beyond the budget and the seed. */
export type PolicyParameters = Omit<DeepPartial<EvictionSpec>, "policy" | "maxTokens" | "keepFraction" | "seed">;

/**
 * NACL's proxy span when the question is in the cache (query-aware recall):
 * the question with the answer prefix ("what is the pass key? the pass key is",
 * the default), the question sentence alone (up to its "?"), the last prompt
 * token alone (the one whose next token is the answer), or none: the last
 * proxy_tokens positions, as without a question.
 */
export type ProxyChoice = "question-and-prefix" | "question-sentence" | "last-token" | "suffix";

/** One policy as the evaluation runs it: a name in the report, the policy and the parameters it is given. */
export interface PolicyVariant {
  label: string;
  policy: string;
  params: PolicyParameters;
  /** NACL only; absent = "question-and-prefix". */
  proxy?: ProxyChoice;
  /** Recall runs it query-aware only (a proxy span on the question needs the question in the cache); absent = both modes. */
  queryAwareOnly?: boolean;
}

/**
 * Every policy the sidecar offers except `none`, with adakv run twice (over
 * snapkv and over pyramidkv) and knorm also as its ablation (knorm-highest). Windowed policies (SnapKV family: observation
 * window; NACL: proxy tokens) get `window` instead of their default of 32,
 * which is sized for prompts of thousands of tokens and would not even fit
 * the smallest budgets of a few-hundred-token context. A parameter the
 * sidecar's policy does not list is left out, so older sidecars still work.
 */
export function policyVariants(info: InfoResponse, window: number): PolicyVariant[] {
  const variants: PolicyVariant[] = [];
  for (const policy of info.policies) {
    const takes = new Set(policy.parameters.map((p) => p.name));
    const params = (wanted: Record<string, number | string>): PolicyParameters =>
      Object.fromEntries(Object.entries(wanted).filter(([name]) => takes.has(snakeCase(name))));
    switch (policy.name) {
      case "none":
        break;
      case "snapkv":
      case "pyramidkv":
        variants.push({ label: policy.name, policy: policy.name, params: params({ window }) });
        break;
      case "adakv":
        variants.push({ label: "ada-snapkv", policy: "adakv", params: params({ window, basePolicy: "snapkv" }) });
        variants.push({ label: "ada-pyramidkv", policy: "adakv", params: params({ window, basePolicy: "pyramidkv" }) });
        break;
      case "nacl":
        variants.push({ label: "nacl", policy: "nacl", params: params({ proxyTokens: window }) });
        break;
      case "knorm":
        // And the L2-norm paper's ablation, when the sidecar offers it: the highest-norm keys kept.
        variants.push({ label: "knorm", policy: "knorm", params: {} });
        if (takes.has("keep_highest_norm")) variants.push({ label: "knorm-highest", policy: "knorm", params: { keepHighestNorm: true } });
        break;
      default:
        variants.push({ label: policy.name, policy: policy.name, params: {} });
    }
  }
  return variants;
}

/**
 * Keeps the variants named by label or by policy (`adakv` selects both of its
 * variants). `none` is known but selects nothing: the full cache, which every
 * run measures anyway, so `["none"]` measures the full cache alone.
 */
export function selectVariants(variants: PolicyVariant[], names: readonly string[]): PolicyVariant[] {
  const unknown = names.filter((name) => name !== "none" && !variants.some((v) => v.label === name || v.policy === name));
  if (unknown.length > 0) throw new Error(`unknown policies ${unknown.join(", ")}; available: ${variants.map((v) => v.label).join(", ")}`);
  return variants.filter((v) => names.includes(v.label) || names.includes(v.policy));
}

/** The parameters as the report states them, in proto field names (enums by value name: pooling=max). */
export function describeParams(params: PolicyParameters): string {
  const enumName = (name: string, value: unknown) =>
    name === "pooling" ? poolingToJSON(value as Pooling) : name === "groupReduction" ? groupReductionToJSON(value as GroupReduction) : undefined;
  const entries = Object.entries(params).map(([name, value]) => {
    const named = enumName(name, value)?.replace(/^(POOLING|GROUP_REDUCTION)_/, "").toLowerCase();
    const text = named ?? (typeof value === "object" && value !== null && "start" in value ? `[${value.start}, ${value.end})` : Array.isArray(value) ? `[${value.join(", ")}]` : String(value));
    return `${snakeCase(name)}=${text}`;
  });
  return entries.length > 0 ? entries.join(", ") : "defaults";
}

/** The minimum a budget was refused for, or undefined for any other failure. */
export function budgetMinimumOf(error: unknown): number | undefined {
  const grpc = error as Partial<ServiceError>;
  if (grpc.code !== status.INVALID_ARGUMENT) return undefined;
  const match = /below the minimum of (\d+)/.exec(grpc.details ?? "");
  return match ? Number(match[1]) : undefined;
}
