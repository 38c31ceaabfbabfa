import { InvalidEvictionError, type EvictionSpec } from "./policy.js";

/** Budget C for a head holding `entries` entries (C = max(1, floor(T * f))). */
export function budgetFor(spec: EvictionSpec): (entries: number) => number {
  const { budget } = spec;
  if ("maxTokens" in budget) {
    if (!Number.isInteger(budget.maxTokens) || budget.maxTokens < 1) {
      throw new InvalidEvictionError("eviction.max_tokens", `eviction.max_tokens must be a positive integer, got ${budget.maxTokens}`);
    }
    return () => budget.maxTokens;
  }
  const fraction = budget.keepFraction;
  if (!(fraction > 0 && fraction <= 1)) {
    throw new InvalidEvictionError("eviction.keep_fraction", `eviction.keep_fraction must be in (0, 1], got ${fraction}`);
  }
  return (entries) => Math.max(1, Math.floor(entries * fraction));
}
