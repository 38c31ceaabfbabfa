import { beforeAll, describe, expect, it, vi } from "vitest";
import { Engine, type EngineModel } from "../../src/engine/engine.js";
import { EngineError } from "../../src/engine/engine-error.js";
import { loadTestModel } from "../support/test-model.js";
import { DEFAULT_TEST_OPTIONS } from "../support/test-server.js";

const PROMPT = Array.from({ length: 100 }, (_, i) => 5 + i);

describe("the engine's admission queue", () => {
  let model: EngineModel;
  /** What one PROMPT sequence holds. */
  let one: number;
  beforeAll(async () => {
    model = await loadTestModel();
    const probe = new Engine(model, DEFAULT_TEST_OPTIONS);
    one = (await probe.prefill({ sequenceId: "a", tokenIds: PROMPT })).kvBytes;
    probe.close();
  });

  const engineWithA = async (budgetShare: number) => {
    const engine = new Engine(model, { ...DEFAULT_TEST_OPTIONS, kvBudgetBytes: Math.floor(one * budgetShare), maxQueue: 4 });
    await engine.prefill({ sequenceId: "a", tokenIds: PROMPT });
    return engine;
  };
  const queued = (engine: Engine, n: number) => vi.waitFor(() => expect(engine.requestsWaiting).toBe(n), { timeout: 10_000, interval: 5 });
  const ids = (engine: Engine) => engine.stats().sequences.map((s) => s.sequenceId);

  it("ends a waiting call with DEADLINE_EXCEEDED when its signal aborts for the deadline, CANCELLED otherwise, removing the sequence it opened", async () => {
    const engine = await engineWithA(1.5);
    try {
      for (const [reason, code] of [
        ["deadline", "DEADLINE_EXCEEDED"],
        ["cancelled", "CANCELLED"],
      ]) {
        const controller = new AbortController();
        const waiting = engine.prefill({ sequenceId: "b", tokenIds: PROMPT }, { signal: controller.signal });
        await queued(engine, 1);
        expect(ids(engine)).toEqual(["a", "b"]);
        controller.abort(reason);
        const error = await waiting.catch((e: unknown) => e);
        expect(error).toBeInstanceOf(EngineError);
        expect((error as EngineError).code).toBe(code);
        expect(engine.requestsWaiting).toBe(0);
        expect(ids(engine)).toEqual(["a"]);
        expect(engine.stats().kvBytesUsed).toBe(one);
      }
    } finally {
      engine.close();
    }
  });

  it("leaves an existing sequence as it was when its waiting call gives up", async () => {
    const engine = await engineWithA(1.5);
    try {
      await engine.prefill({ sequenceId: "b", tokenIds: PROMPT.slice(0, 10) });
      const before = engine.stats({ sequenceId: "b" }).sequences[0];
      const controller = new AbortController();
      const waiting = engine.prefill({ sequenceId: "b", tokenIds: PROMPT }, { signal: controller.signal });
      await queued(engine, 1);
      controller.abort("cancelled");
      await expect(waiting).rejects.toMatchObject({ code: "CANCELLED" });
      const after = engine.stats({ sequenceId: "b" }).sequences[0];
      expect({ ...after, idleMs: 0 }).toEqual({ ...before, idleMs: 0 });
    } finally {
      engine.close();
    }
  });

  it("tries again when a Decode leaves its sequence idle: relief may then compress it for the waiting call", async () => {
    // Tight enough that "b" needs relief even after "a"'s Decode gives its recent-query ring back (streaming_llm reads none).
    const engine = await engineWithA(1.6);
    try {
      // A standing decode budget of 80 entries, not reached while decoding (100 < 80 + decode_slack 64).
      const stream = engine.decode({
        sequenceId: "a",
        maxNewTokens: 100,
        sampling: { temperature: 0, topK: 0, topP: 1, seed: 0n },
        stopTokenIds: [],
        ignoreEos: true,
        eviction: { policy: "streaming_llm", budget: { maxTokens: 80 }, params: {} },
      });
      await stream.next();
      const waiting = engine.prefill({ sequenceId: "b", tokenIds: PROMPT });
      await queued(engine, 1); // "a" is busy: no relief from it
      await stream.return(undefined);
      const admitted = await waiting;
      expect(admitted.kvBytes).toBe(one);
      expect(Math.max(...engine.stats({ sequenceId: "a" }).sequences[0].headLengths.flat())).toBe(80);
    } finally {
      engine.close();
    }
  });
});
