import { adakvPolicy } from "./adakv.js";
import { budgetFor } from "./budget.js";
import { h2oPolicy } from "./h2o.js";
import { knormPolicy } from "./knorm.js";
import { naclPolicy } from "./nacl.js";
import { nonePolicy } from "./none.js";
import { InvalidEvictionError, type EvictionSpec, type Policy } from "./policy.js";
import { pyramidkvPolicy } from "./pyramidkv.js";
import { randomPolicy } from "./random.js";
import { simlayerkvPolicy } from "./simlayerkv.js";
import { snapkvPolicy } from "./snapkv.js";
import { streamingLlmPolicy } from "./streaming-llm.js";
import { tovaPolicy } from "./tova.js";
import { minimumBudget } from "./protected-parts.js";

/** Every policy this build offers, by name. */
export const POLICIES: ReadonlyMap<string, Policy> = new Map(
  [
    nonePolicy,
    streamingLlmPolicy,
    snapkvPolicy,
    pyramidkvPolicy,
    adakvPolicy,
    naclPolicy,
    knormPolicy,
    simlayerkvPolicy,
    h2oPolicy,
    tovaPolicy,
    randomPolicy,
  ].map((p) => [p.name, p]),
);

/**
 * Checks a request against its policy before anything runs: known name, only
 * parameters the policy takes, a budget within bounds. `entries` is the
 * largest head length the eviction will see. Returns the policy and C(T).
 */
export function resolveEviction(
  spec: EvictionSpec,
  entries: number,
  recentQueryRows: number,
): { policy: Policy; budget: (entries: number) => number } {
  const policy = POLICIES.get(spec.policy);
  if (!policy) {
    throw new InvalidEvictionError(
      "eviction.policy",
      `unknown eviction policy '${spec.policy}'; available: ${[...POLICIES.keys()].join(", ")}`,
    );
  }
  for (const [name, value] of Object.entries(spec.params)) {
    const doc = policy.parameters.find((p) => p.name === name);
    if (!doc) {
      throw new InvalidEvictionError(`eviction.${snakeCase(name)}`, `policy '${policy.name}' does not take parameter ${snakeCase(name)}`);
    }
    if (doc.choices && !doc.choices.includes(value as string)) {
      throw new InvalidEvictionError(`eviction.${snakeCase(name)}`, `policy '${policy.name}' takes ${snakeCase(name)} ${doc.choices.join(" or ")}, not '${value}'`);
    }
  }
  const rows = policy.queryRowsNeeded(spec.params);
  if (rows > recentQueryRows) {
    throw new InvalidEvictionError(
      "eviction",
      `policy '${policy.name}' needs the queries of the last ${rows} tokens, but this server keeps ${recentQueryRows} (--recent-queries)`,
    );
  }
  const budget = budgetFor(spec);
  const minimum = minimumBudget(policy, spec.params);
  const resolved = budget(entries);
  if (policy !== nonePolicy && resolved < minimum && resolved < entries) {
    throw new InvalidEvictionError(
      "maxTokens" in spec.budget ? "eviction.max_tokens" : "eviction.keep_fraction",
      `budget of ${resolved} entries per head is below the minimum of ${minimum} for policy '${policy.name}'`,
    );
  }
  return { policy, budget };
}

export function snakeCase(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}
