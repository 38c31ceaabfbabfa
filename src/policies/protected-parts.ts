import { paramOf, type Policy, type PolicyParams, type ProtectedPart } from "./policy.js";

/** Attention sinks: the first sink_tokens entries of each head. */
export const sinkEntries: ProtectedPart = (policy, params) => paramOf(policy, params, "sinkTokens");

/** The observation window: the last W entries, which score the others. */
export const observationWindow: ProtectedPart = (policy, params) => paramOf(policy, params, "window");

/** Proxy queries' own entries (NACL): the span the request names, else the last proxy_tokens. */
export const proxyQueries: ProtectedPart = (policy, params) =>
  params.proxySpan ? params.proxySpan.end - params.proxySpan.start : paramOf(policy, params, "proxyTokens");

/** H2O's recent entries, counted only when the request names them: the default, floor(C/2), grows with the budget. */
export const namedRecentEntries: ProtectedPart = (_policy, params) => params.recentTokens ?? 0;

/** The smallest budget C a policy accepts: room for every part it always keeps, and one entry it chooses. */
export function minimumBudget(policy: Policy, params: Partial<PolicyParams>): number {
  return policy.protectedParts.reduce((sum, part) => sum + part(policy, params), 0) + 1;
}
