import { status } from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { EngineModel } from "../../src/engine/engine.js";
import type { Policy } from "../../src/policies/policy.js";
import { POLICIES } from "../../src/policies/registry.js";
import { healthOf } from "../support/health-probe.js";
import { loadTestModel } from "../support/test-model.js";
import { decodeAll, startTestServer, type TestServer } from "../support/test-server.js";

/** While slowed, each layer of a plan takes this many steps of STEP_MS more: an eviction of a long sequence on a large model. */
const STEPS_PER_LAYER = 5;
const STEP_MS = 15;

/** snapkv, slowed down layer by layer while `slow` is set; `planning` resolves once such a plan has started. */
function slowedSnapkv(): { slow: { on: boolean; plans: number }; planning: () => Promise<void>; restore: () => void } {
  const policy = POLICIES.get("snapkv") as Policy;
  const plan = policy.plan;
  const slow = { on: false, plans: 0 };
  let started = () => {};
  policy.plan = function* (...args) {
    if (slow.on) slow.plans++;
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

const tokenIds = (n: number) => Array.from({ length: n }, (_, i) => (i === 0 ? 1 : 3 + ((i * 7919) % 500)));
const eviction = { policy: "snapkv", maxTokens: 64 };
/** Names snapkv without evicting, so that the sequence keeps the queries it scores. */
const scored = { policy: "snapkv", maxTokens: 4096 };

/**
 * Eviction plans run in slices with the event loop turning between layers
 * (src/engine/apply-eviction.ts): while a long plan runs, health checks and
 * Stats are answered, and a call cancelled mid-plan leaves its sequence as it was.
 */
describe("while an eviction is planned", () => {
  let model: EngineModel;
  let t: TestServer;
  let snapkv: ReturnType<typeof slowedSnapkv>;

  beforeAll(async () => {
    snapkv = slowedSnapkv();
    model = await loadTestModel();
    t = await startTestServer(model);
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
    await t.client.prefill({ sequenceId: "long", tokenIds: tokenIds(200), eviction: scored });
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
    await t.client.prefill({ sequenceId: "kept", tokenIds: tokenIds(200), eviction: scored });
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

  describe("under memory pressure", () => {
    /** An idle sequence of 200 tokens that asked to be kept within 64 entries per head, the slack wide enough never to run. */
    const idle = async (client: TestServer["client"]) => {
      await client.prefill({ sequenceId: "idle", tokenIds: tokenIds(199), eviction: scored });
      await decodeAll(client, { sequenceId: "idle", maxNewTokens: 1, ignoreEos: true, eviction: { ...eviction, decodeSlack: 1024 } });
    };
    const bytes = async (client: TestServer["client"], sequenceId: string) => (await client.stats({ sequenceId })).sequences[0].kvBytes;
    let scene: { idle: bigint; new: bigint; compressed: bigint };
    let tight: TestServer;

    beforeAll(async () => {
      const roomy = await startTestServer(model);
      await idle(roomy.client);
      await roomy.client.prefill({ sequenceId: "new", tokenIds: tokenIds(100) });
      scene = { idle: await bytes(roomy.client, "idle"), new: await bytes(roomy.client, "new"), compressed: 0n };
      scene.compressed = (await roomy.client.evict({ sequenceId: "idle", eviction })).eviction!.bytesAfter;
      await roomy.close();
    });
    // Room for "idle" and "new" only once "idle" is compressed.
    beforeEach(async () => {
      tight = await startTestServer(model, { kvBudgetBytes: Number(scene.new + (scene.idle + scene.compressed) / 2n) });
      await idle(tight.client);
      snapkv.slow.on = true;
      snapkv.slow.plans = 0;
    });
    afterEach(async () => {
      snapkv.slow.on = false;
      await tight.close();
    });

    /** Memory pressure compresses an idle sequence to its decode budget: a Prefill short of room works that out first, in slices (KvMemoryManager.prepareRelief). */
    it("answers Stats while a Prefill short of room works out the compression of an idle sequence", async () => {
      const planning = snapkv.planning();
      const answered: string[] = [];
      const prefill = tight.client.prefill({ sequenceId: "new", tokenIds: tokenIds(100) }).then(() => answered.push("prefill"));
      await planning;
      // Answered before the compression is committed: "idle" still holds all it held.
      const stats = tight.client.stats({ sequenceId: "idle" }).then((reply) => answered.push(`stats ${reply.sequences[0].kvBytes}`));
      await Promise.all([prefill, stats]);
      expect(answered).toEqual([`stats ${scene.idle}`, "prefill"]);
      // Planned once, in slices; the admission committed that plan.
      expect(snapkv.slow.plans).toBe(1);
      expect(await bytes(tight.client, "idle")).toBe(scene.compressed);
    });

    it("answers Stats while a Decode step short of room works out the compression of an idle sequence", async () => {
      // Room for "idle" and "new" as prefilled, not for one more block of "new" unless "idle" is compressed.
      snapkv.slow.on = false;
      await tight.close();
      tight = await startTestServer(model, { kvBudgetBytes: Number(scene.idle + scene.new) });
      await idle(tight.client);
      await tight.client.prefill({ sequenceId: "new", tokenIds: tokenIds(100) });
      snapkv.slow.on = true;
      const planning = snapkv.planning();
      const decode = decodeAll(tight.client, { sequenceId: "new", maxNewTokens: 64, ignoreEos: true });
      await planning;
      // Answered before the compression is committed: "idle" still holds all it held.
      expect(await bytes(tight.client, "idle")).toBe(scene.idle);
      expect((await decode).length).toBe(64);
      expect(snapkv.slow.plans).toBe(1);
      expect(await bytes(tight.client, "idle")).toBe(scene.compressed);
    });

    it("answers Stats while a call waiting in the admission queue has the compression it needs worked out", async () => {
      await tight.close();
      tight = await startTestServer(model, { kvBudgetBytes: Number(scene.new + (scene.idle + scene.compressed) / 2n), maxQueue: 4 });
      await idle(tight.client);
      // While "idle" decodes it is busy, so relief cannot compress it: "new" waits in the queue.
      const stream = tight.engine.decode({ sequenceId: "idle", maxNewTokens: 2, sampling: { temperature: 0, topK: 0, topP: 1, seed: 0n }, stopTokenIds: [], ignoreEos: true })[Symbol.asyncIterator]();
      await stream.next();
      const prefill = tight.client.prefill({ sequenceId: "new", tokenIds: tokenIds(100) }, { deadline: Date.now() + 60_000 });
      await expect.poll(() => tight.engine.requestsWaiting).toBe(1);
      await stream.next();
      const decoded = await bytes(tight.client, "idle");
      const planning = snapkv.planning();
      expect((await stream.next()).done).toBe(true); // the stream's end tries the queue again
      await planning;
      // Answered before the compression is committed: "idle" still holds all it held.
      expect(await bytes(tight.client, "idle")).toBe(decoded);
      await prefill;
      expect(snapkv.slow.plans).toBe(1);
      expect(await bytes(tight.client, "idle")).toBeLessThan(decoded);
      expect(tight.engine.requestsWaiting).toBe(0);
    });

    it("drops a compression worked out for a sequence that changed meanwhile, and plans it again", async () => {
      const planning = snapkv.planning();
      const prefill = tight.client.prefill({ sequenceId: "new", tokenIds: tokenIds(100) });
      await planning;
      // "idle" is not held while its compression is worked out: a call may change it (here, evict it to 100 entries a head).
      await tight.client.evict({ sequenceId: "idle", eviction: { policy: "streaming_llm", maxTokens: 100 } });
      snapkv.slow.on = false;
      const outcome = await prefill.then(
        () => "OK",
        (error: { code: number }) => error.code,
      );
      expect(["OK", status.RESOURCE_EXHAUSTED]).toContain(outcome);
      // Compressed, if at all (the eviction may have made room), from what it holds now, never with the plan made for its 200 entries a head.
      const heads = new Set((await tight.client.stats({ sequenceId: "idle" })).sequences[0].layers.flatMap((layer) => layer.headLengths));
      expect([[64], [100]]).toContainEqual([...heads]);
    });
  });
});
