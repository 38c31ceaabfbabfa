import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { Engine, type EngineModel, type EngineOptions } from "../../src/engine/engine.js";
import { EngineError } from "../../src/engine/engine-error.js";
import { loadTestModel } from "../support/test-model.js";
import { DEFAULT_TEST_OPTIONS } from "../support/test-server.js";

const alice = { tenant: "alice" };
const bob = { tenant: "bob" };
const greedy = { temperature: 0, topK: 0, topP: 0, seed: 0n };

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof EngineError) return error.code;
    throw error;
  }
  return "OK";
}

async function decode(engine: Engine, sequenceId: string, caller = alice): Promise<number[]> {
  const tokens: number[] = [];
  for await (const t of engine.decode({ sequenceId, maxNewTokens: 3, sampling: greedy, stopTokenIds: [], ignoreEos: true }, { caller })) tokens.push(t.tokenId);
  return tokens;
}

describe("tenants, quotas and idempotent retries", () => {
  let model: EngineModel;
  let engine: Engine;
  const start = (options: Partial<EngineOptions> = {}) => (engine = new Engine(model, { ...DEFAULT_TEST_OPTIONS, ...options }));
  beforeAll(async () => {
    model = await loadTestModel();
  });
  afterEach(() => engine.close());

  it("scopes sequence ids by tenant: another tenant's id is NOT_FOUND, exactly like a missing one", async () => {
    start();
    await engine.prefill({ sequenceId: "doc", tokenIds: [1, 403] }, { caller: alice });
    // Bob's "doc" is a different sequence.
    await engine.prefill({ sequenceId: "doc", tokenIds: [1, 403, 407, 261] }, { caller: bob });
    expect(engine.stats({ sequenceId: "doc" }, { caller: alice }).sequences[0].position).toBe(2);
    expect(engine.stats({ sequenceId: "doc" }, { caller: bob }).sequences[0].position).toBe(4);

    const missing = async (call: () => unknown) => {
      try {
        await call();
      } catch (error) {
        return (error as EngineError).message.replace(/'[^']*'/, "ID");
      }
      return "no error";
    };
    const carol = { tenant: "carol" };
    const foreign = await missing(() => engine.stats({ sequenceId: "doc" }, { caller: carol }));
    const absent = await missing(() => engine.stats({ sequenceId: "nothing" }, { caller: alice }));
    expect(foreign).toBe(absent);
    expect(await codeOf(decode(engine, "doc", carol))).toBe("NOT_FOUND");
    expect(await codeOf(engine.evict("doc", { policy: "streaming_llm", budget: { maxTokens: 8 }, params: {} }, { caller: carol }))).toBe("NOT_FOUND");
    expect(await engine.release("doc", { caller: carol })).toEqual({ found: false, freedBytes: 0 });
    expect(engine.stats({}, { caller: carol }).sequences).toEqual([]);
    expect(engine.stats({}, { caller: alice }).sequences.map((s) => s.sequenceId)).toEqual(["doc"]);
  });

  it("enforces per-tenant quotas on bytes, sequences and tokens per request, beside the global budget", async () => {
    start({ tenantQuota: { kvBytes: 400_000, sequences: 2, requestTokens: 100 } });
    await engine.prefill({ sequenceId: "a", tokenIds: Array(50).fill(5) }, { caller: alice });
    await engine.prefill({ sequenceId: "b", tokenIds: Array(10).fill(5) }, { caller: alice });
    expect(await codeOf(engine.prefill({ sequenceId: "c", tokenIds: [1] }, { caller: alice }))).toBe("RESOURCE_EXHAUSTED");
    expect(await codeOf(engine.prefill({ sequenceId: "a", tokenIds: Array(101).fill(5) }, { caller: alice }))).toBe("RESOURCE_EXHAUSTED");
    const before = engine.stats({}, { caller: alice });
    expect(await codeOf(engine.prefill({ sequenceId: "a", tokenIds: Array(100).fill(5) }, { caller: alice }))).toBe("RESOURCE_EXHAUSTED");
    expect(engine.stats({}, { caller: alice }).tenantKvBytes).toBe(before.tenantKvBytes);
    expect(before).toMatchObject({ tenantSequenceCount: 2, tenantSequenceQuota: 2, tenantKvBytesQuota: 400_000 });
    // Bob has his own quota.
    await engine.prefill({ sequenceId: "a", tokenIds: Array(100).fill(5) }, { caller: bob });
  });

  it("answers a retried Prefill, Evict or Release from the stored result, never applying it twice", async () => {
    start();
    const prefill = { sequenceId: "s", tokenIds: [1, 403, 407] };
    const first = await engine.prefill(prefill, { caller: alice, requestId: "req-1" });
    const retry = await engine.prefill(prefill, { caller: alice, requestId: "req-1" });
    expect(retry).toEqual(first);
    expect(engine.stats({ sequenceId: "s" }, { caller: alice }).sequences[0].position).toBe(3);
    // The same id from another tenant is another request.
    await engine.prefill({ sequenceId: "s", tokenIds: [1] }, { caller: bob, requestId: "req-1" });

    await engine.prefill({ sequenceId: "s", tokenIds: Array(30).fill(5) }, { caller: alice });
    const spec = { policy: "streaming_llm", budget: { maxTokens: 8 }, params: {} };
    const evicted = await engine.evict("s", spec, { caller: alice, requestId: "req-2" });
    expect(await engine.evict("s", spec, { caller: alice, requestId: "req-2" })).toEqual(evicted);

    expect(await engine.release("s", { caller: alice, requestId: "req-3" })).toMatchObject({ found: true });
    expect(await engine.release("s", { caller: alice, requestId: "req-3" })).toMatchObject({ found: true });
    expect(await engine.release("s", { caller: alice })).toMatchObject({ found: false });

    // Reusing an id for a different request is an error; a failed request can be retried.
    expect(await codeOf(engine.prefill({ sequenceId: "other", tokenIds: [1] }, { caller: alice, requestId: "req-1" }))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(engine.prefill({ sequenceId: "t", tokenIds: [9999] }, { caller: alice, requestId: "req-4" }))).toBe("INVALID_ARGUMENT");
    await engine.prefill({ sequenceId: "t", tokenIds: [1] }, { caller: alice, requestId: "req-4b" });
  });

  it("joins a retry that arrives while the first attempt still runs", async () => {
    start();
    const request = { sequenceId: "slow", tokenIds: Array(200).fill(5) };
    const context = { caller: alice, requestId: "req-join" };
    const [a, b] = await Promise.all([engine.prefill(request, context), engine.prefill(request, context)]);
    expect(a).toBe(b);
    expect(engine.stats({ sequenceId: "slow" }, { caller: alice }).sequences[0].position).toBe(200);
  });
});
