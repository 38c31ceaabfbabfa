import fc from "fast-check";
import type { DecodeRequest, DeepPartial, EvictionSpec, EvictRequest, ForkRequest, PrefillRequest, ReleaseRequest, StatsRequest } from "../../../src/gen/kvwarden/v1/kvwarden.js";
import { POLICIES } from "../../../src/policies/registry.js";

/**
 * fast-check arbitraries for structured KvCache calls: mostly well-formed
 * (so calls reach the model, the policies and the budgets), with a share of
 * out-of-range, contradictory and unknown values (so validation is exercised
 * too). Every value is encodable (uint32 fields stay in range).
 */

const UINT32_MAX = 0xffffffff;
/** Mostly small, sometimes any uint32. */
const count = (max: number) => fc.oneof({ weight: 9, arbitrary: fc.integer({ min: 0, max }) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: UINT32_MAX }) });
/** Mostly in [0, 1], sometimes any double (NaN and infinities included). */
const fraction = fc.oneof({ weight: 6, arbitrary: fc.double({ min: 0, max: 1, noNaN: true }) }, { weight: 1, arbitrary: fc.double() });
/** The same for float (32-bit) fields, which cannot encode doubles beyond float32 range. */
const fraction32 = fc.oneof({ weight: 6, arbitrary: fc.float({ min: 0, max: 1, noNaN: true }) }, { weight: 1, arbitrary: fc.float() });
/** `arbitrary` with probability `share`, else undefined. */
const sometimes = <T>(arbitrary: fc.Arbitrary<T>, share: number) =>
  fc.oneof({ weight: Math.round(100 * (1 - share)), arbitrary: fc.constant(undefined) }, { weight: Math.round(100 * share), arbitrary });

export const TENANTS = ["alice", "bob"] as const;
export type Tenant = (typeof TENANTS)[number];

const sequenceId = fc.oneof({ weight: 20, arbitrary: fc.constantFrom("a", "b", "c") }, { weight: 1, arbitrary: fc.constantFrom("", "x".repeat(300)) });
/** Request ids from a small set, so that retries and reuse for other requests both happen. */
const requestId = sometimes(fc.constantFrom("r1", "r2", "r3"), 0.3);
/** Token ids inside the 512-token vocabulary, and now and then one outside it. */
const tokenIds = (max: number) =>
  fc.oneof(
    { weight: 15, arbitrary: fc.array(fc.integer({ min: 0, max: 511 }), { maxLength: max }) },
    {
      weight: 1,
      arbitrary: fc
        .tuple(fc.array(fc.integer({ min: 0, max: 511 }), { maxLength: max }), fc.integer({ min: 512, max: UINT32_MAX }), fc.nat())
        .map(([ids, bad, at]) => [...ids.slice(0, at % (ids.length + 1)), bad, ...ids.slice(at % (ids.length + 1))]),
    },
  );

const budget = fc.oneof(
  fc.record({ maxTokens: count(40) }),
  fc.record({ keepFraction: fraction }),
  fc.constant({}),
);

/** Parameters drawn at random: most policies refuse some of them, which is part of what is tested. */
const parameters = fc.record(
  {
    seed: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    window: count(16),
    kernelSize: count(9),
    pooling: fc.integer({ min: 0, max: 4 }),
    sinkTokens: count(8),
    recentTokens: count(16),
    alpha: fraction,
    delta: fraction,
    beta: fc.double(),
    proxySpan: fc.record({ start: count(40), end: count(40) }),
    proxyTokens: count(16),
    temperature: fc.double(),
    groupReduction: fc.integer({ min: 0, max: 4 }),
    skipLayers: fc.array(count(6), { maxLength: 3 }),
    basePolicy: fc.constantFrom("snapkv", "pyramidkv", "bogus"),
    decodeSlack: count(16),
  },
  { requiredKeys: [] },
);

/** A policy with a budget it accepts and its default parameters: what reaches the policies' code. */
const usualSpec = fc
  .tuple(fc.constantFrom(...POLICIES.keys()), fc.oneof(fc.record({ maxTokens: fc.integer({ min: 8, max: 40 }) }), fc.record({ keepFraction: fc.double({ min: 0.3, max: 1, noNaN: true }) })))
  .map(([policy, size]) => ({ policy, ...size }));

/** Anything: unknown policies, missing or absurd budgets, parameters the policy does not take. */
const wildSpec = fc
  .tuple(fc.constantFrom(...POLICIES.keys(), "bogus", ""), budget, fc.oneof(fc.constant({}), parameters))
  .map(([policy, size, params]) => ({ policy, ...size, ...params }));

export const evictionSpec: fc.Arbitrary<DeepPartial<EvictionSpec>> = fc.oneof({ weight: 3, arbitrary: usualSpec }, { weight: 1, arbitrary: wildSpec });

const prompt = fc.oneof(
  { weight: 12, arbitrary: tokenIds(48).filter((ids) => ids.length > 0).map((ids) => ({ tokenIds: ids })) },
  { weight: 1, arbitrary: tokenIds(0).map((ids) => ({ tokenIds: ids })) },
  { weight: 2, arbitrary: fc.string({ maxLength: 60 }).map((text) => ({ text })) },
  { weight: 1, arbitrary: fc.record({ tokenIds: tokenIds(4), text: fc.string({ maxLength: 8 }) }) },
  { weight: 1, arbitrary: fc.string({ maxLength: 20 }).map((content) => ({ messages: [{ role: "user", content }] })) },
);

export const prefillRequest: fc.Arbitrary<DeepPartial<PrefillRequest>> = fc
  .tuple(sequenceId, prompt, sometimes(evictionSpec, 0.3), fc.boolean(), fc.oneof({ weight: 9, arbitrary: fc.integer({ min: 0, max: 5 }) }, { weight: 1, arbitrary: count(25) }), requestId)
  .map(([id, input, eviction, returnLogprobs, topLogprobs, rid]) => ({ sequenceId: id, ...input, eviction, returnLogprobs, topLogprobs, requestId: rid }));

const sampling = fc.record(
  {
    temperature: fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 3, arbitrary: fc.float({ min: 0, max: 2, noNaN: true }) }, { weight: 1, arbitrary: fc.float() }),
    topK: count(50),
    topP: fraction32,
    seed: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  },
  { requiredKeys: [] },
);

export const decodeRequest: fc.Arbitrary<DeepPartial<DecodeRequest>> = fc.record({
  sequenceId,
  maxNewTokens: fc.oneof({ weight: 12, arbitrary: fc.integer({ min: 1, max: 12 }) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: UINT32_MAX }) }),
  sampling: sometimes(sampling, 0.5),
  stopTokenIds: fc.oneof({ weight: 3, arbitrary: fc.constant<number[]>([]) }, { weight: 1, arbitrary: tokenIds(3) }),
  ignoreEos: fc.boolean(),
  eviction: sometimes(evictionSpec, 0.25),
});

export const evictRequest: fc.Arbitrary<DeepPartial<EvictRequest>> = fc.record({ sequenceId, eviction: sometimes(evictionSpec, 0.95), requestId });
export const statsRequest: fc.Arbitrary<DeepPartial<StatsRequest>> = fc.record({ sequenceId: fc.oneof(fc.constant(""), sequenceId), includePositions: fc.boolean() });
export const releaseRequest: fc.Arbitrary<DeepPartial<ReleaseRequest>> = fc.record({ sequenceId, requestId });
export const forkRequest: fc.Arbitrary<DeepPartial<ForkRequest>> = fc.record({ sequenceId, newSequenceId: sequenceId, requestId });

export type Call =
  | { method: "prefill"; tenant: Tenant; request: DeepPartial<PrefillRequest> }
  | { method: "decode"; tenant: Tenant; request: DeepPartial<DecodeRequest>; cancelAfter?: number }
  | { method: "evict"; tenant: Tenant; request: DeepPartial<EvictRequest> }
  | { method: "stats"; tenant: Tenant; request: DeepPartial<StatsRequest> }
  | { method: "release"; tenant: Tenant; request: DeepPartial<ReleaseRequest> }
  | { method: "fork"; tenant: Tenant; request: DeepPartial<ForkRequest> };

const tenant = fc.constantFrom(...TENANTS);

export const call: fc.Arbitrary<Call> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ method: fc.constant("prefill" as const), tenant, request: prefillRequest }) },
  { weight: 3, arbitrary: fc.record({ method: fc.constant("decode" as const), tenant, request: decodeRequest, cancelAfter: sometimes(fc.integer({ min: 1, max: 4 }), 0.15) }) },
  { weight: 2, arbitrary: fc.record({ method: fc.constant("evict" as const), tenant, request: evictRequest }) },
  { weight: 1, arbitrary: fc.record({ method: fc.constant("stats" as const), tenant, request: statsRequest }) },
  { weight: 1, arbitrary: fc.record({ method: fc.constant("release" as const), tenant, request: releaseRequest }) },
  { weight: 1, arbitrary: fc.record({ method: fc.constant("fork" as const), tenant, request: forkRequest }) },
);

/** One step: a call on its own, or a few at once (interleavings on shared sequences). */
export const step: fc.Arbitrary<Call[]> = fc.oneof({ weight: 4, arbitrary: call.map((c) => [c]) }, { weight: 1, arbitrary: fc.array(call, { minLength: 2, maxLength: 3 }) });
