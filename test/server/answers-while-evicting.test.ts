import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Policy } from "../../src/policies/policy.js";
import { POLICIES } from "../../src/policies/registry.js";
import { healthOf } from "../support/health-probe.js";
import { loadTestModel } from "../support/test-model.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

/** While slowed, each layer of a plan takes this many steps of STEP_MS more: an eviction of a long sequence on a large model. */
const STEPS_PER_LAYER = 5;
const STEP_MS = 15;

/** snapkv, slowed down layer by layer while `slow` is set; `planning` resolves once such a plan has started. */
function slowedSnapkv(): { slow: { on: boolean }; planning: () => Promise<void>; restore: () => void } {
  const policy = POLICIES.get("snapkv") as Policy;
  const plan = policy.plan;
  const slow = { on: false };
  let started = () => {};
  policy.plan = function* (...args) {
    const work = plan.apply(this, args);
    for (;;) {
      const step = work.next();
      if (step.done) return step.value;
      yield;
      for (let i = 0; slow.on && i < STEPS_PER_LAYER; i++) {
        started();
        const until = performance.now() + STEP_MS;
        while (performance.now() < until);
        yield;
      }
    }
  };
  return {
    slow,
    planning: () => new Promise<void>((resolve) => (started = resolve)),
    restore: () => void (policy.plan = plan),
  };
}

/**
 * Eviction plans run in slices with the event loop turning between layers
 * (src/engine/apply-eviction.ts): while a long plan runs, health checks and
 * Stats are answered, and a call cancelled mid-plan leaves its sequence as it was.
 */
describe("while an eviction is planned", () => {
  const tokenIds = Array.from({ length: 200 }, (_, i) => (i === 0 ? 1 : 3 + ((i * 7919) % 500)));
  const eviction = { policy: "snapkv", maxTokens: 64 };
  let t: TestServer;
  let snapkv: ReturnType<typeof slowedSnapkv>;

  beforeAll(async () => {
    snapkv = slowedSnapkv();
    t = await startTestServer(await loadTestModel());
  });
  afterAll(async () => {
    snapkv.restore();
    await t.close();
  });

  /** What an eviction changes in a sequence, as Stats reports it. */
  const cacheOf = async (sequenceId: string) => {
    const { position, kvBytes, entries, layers } = (await t.client.stats({ sequenceId })).sequences[0];
    return { position, kvBytes, entries, layers };
  };

  it("answers health and Stats before the plan ends", async () => {
    await t.client.prefill({ sequenceId: "long", tokenIds, eviction: { policy: "snapkv", maxTokens: 4096 } });
    snapkv.slow.on = true;
    const planning = snapkv.planning();
    const answered: string[] = [];
    const evict = t.client.evict({ sequenceId: "long", eviction }).then((reply) => {
      answered.push("evict");
      return reply.eviction!;
    });
    await planning;
    const health = healthOf(t.address, "kvwarden.v1.KvCache").then((state) => answered.push(`health ${state}`));
    const stats = t.client.stats().then((reply) => answered.push(`stats ${reply.sequences.map((s) => s.sequenceId).join(",")}`));
    await Promise.all([evict, health, stats]);
    snapkv.slow.on = false;
    expect(answered.slice(0, 2).sort()).toEqual(["health SERVING", "stats long"]);
    expect(answered[2]).toBe("evict");
    const outcome = await evict;
    expect(Number(outcome.entriesAfter)).toBeLessThan(Number(outcome.entriesBefore));
  });

  it("leaves the sequence as it was when the call is cancelled mid-plan", async () => {
    await t.client.prefill({ sequenceId: "kept", tokenIds, eviction: { policy: "snapkv", maxTokens: 4096 } });
    const before = await cacheOf("kept");
    snapkv.slow.on = true;
    const planning = snapkv.planning();
    const cancel = new AbortController();
    const evict = t.client.evict({ sequenceId: "kept", eviction }, { signal: cancel.signal }).then(
      () => "OK",
      (error: { code: number }) => error.code,
    );
    await planning;
    cancel.abort();
    expect(await evict).toBe(status.CANCELLED);
    // Fork holds the sequence too: it is refused (ABORTED) until the cancelled call has let go of it.
    await expect
      .poll(() => t.client.fork("kept", "copy").then(() => "forked", (error: { code: number }) => error.code), { timeout: 10_000 })
      .toBe("forked");
    snapkv.slow.on = false;
    expect(await cacheOf("kept")).toEqual(before);
    expect((await t.client.evict({ sequenceId: "kept", eviction })).eviction?.entriesBefore).toBe(before.entries);
  });
});
