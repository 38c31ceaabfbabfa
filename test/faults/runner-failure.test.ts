import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EngineModel } from "../../src/engine/engine.js";
import type { StepRunner } from "../../src/model/runners/step-runner.js";
import { loadTestModel } from "../support/test-model.js";
import { decodeAll, decodeOutcome, startTestServer, statusOf, type TestServer } from "../support/test-server.js";
import { expectExactAccounting } from "../fuzz/support/accounting.js";
import { expectDecodesLikeReference } from "./support/reference-decode.js";
import { sequenceState } from "./support/sequence-state.js";

const PROMPT = [1, 403, 407, 261, 378, 432];

/**
 * The model with a runner that fails, as a broken onnxruntime session would: on the step after
 * `failAfter` more steps succeed, or on the next batched decode step after `failNextBatch`.
 */
function faultyModel(model: EngineModel): { model: EngineModel; failAfter(steps: number): void; failNextBatch(): void } {
  let remaining = Infinity;
  let failBatch = false;
  const injected = () => Promise.reject(new Error("Non-zero status code returned while running MatMul node (injected)"));
  const runner: StepRunner = Object.create(model.runner);
  runner.run = (input) => {
    if (remaining-- <= 0) {
      remaining = Infinity;
      return injected();
    }
    return model.runner.run(input);
  };
  runner.runDecodeBatch = (input) => {
    if (failBatch) {
      failBatch = false;
      return injected();
    }
    return model.runner.runDecodeBatch(input);
  };
  return { model: { ...model, runner }, failAfter: (steps) => (remaining = steps), failNextBatch: () => (failBatch = true) };
}

describe("an onnxruntime failure during a step", () => {
  let t: TestServer;
  let fail: (afterSteps: number) => void;
  let failNextBatch: () => void;
  beforeAll(async () => {
    const faulty = faultyModel(await loadTestModel());
    fail = faulty.failAfter;
    failNextBatch = faulty.failNextBatch;
    t = await startTestServer(faulty.model, { prefillChunkTokens: 4 });
    await t.client.prefill({ sequenceId: "doc", tokenIds: PROMPT });
    await t.client.prefill({ sequenceId: "bystander", tokenIds: PROMPT });
  });
  afterAll(() => t.close());

  const failsInternal = async (promise: Promise<unknown>) => expect(await statusOf(promise)).toMatchObject({ code: status.INTERNAL, details: expect.stringContaining("injected") });

  it("fails a prefill with INTERNAL whichever chunk breaks, leaving the sequence as it was", async () => {
    const before = await sequenceState(t.client, "doc");
    for (const steps of [0, 2]) {
      fail(steps);
      await failsInternal(t.client.prefill({ sequenceId: "doc", tokenIds: [5, 6, 7, 8, 9, 10, 11, 12, 13, 14] }));
      expect(await sequenceState(t.client, "doc")).toEqual(before);
    }
    // A single chunk at a block boundary: the capacity reserved for it is given back too.
    await t.client.prefill({ sequenceId: "full", tokenIds: Array.from({ length: 16 }, (_, i) => 5 + i) });
    const full = await sequenceState(t.client, "full");
    fail(0);
    await failsInternal(t.client.prefill({ sequenceId: "full", tokenIds: [5, 6, 7] }));
    expect(await sequenceState(t.client, "full")).toEqual(full);
    await t.client.release("full");

    fail(1);
    await failsInternal(t.client.prefill({ sequenceId: "new", tokenIds: [1, 2, 3, 4, 5, 6, 7, 8] }));
    expect((await t.client.stats()).sequences.map((s) => s.sequenceId).sort()).toEqual(["bystander", "doc"]);
  });

  it("ends a decode with INTERNAL; the tokens delivered before stay, the failed step leaves no trace", async () => {
    await decodeAll(t.client, { sequenceId: "doc", maxNewTokens: 2, ignoreEos: true });
    const before = await sequenceState(t.client, "doc");
    fail(3);
    const { received, code } = await decodeOutcome(t.client, { sequenceId: "doc", maxNewTokens: 20, ignoreEos: true });
    const delivered = received.map((m) => m.position);
    expect(code).toBe(status.INTERNAL);
    // Each token first feeds the one before it (the earlier Decode left one pending): three steps ran, the fourth failed.
    expect(delivered).toEqual([0, 1, 2].map((i) => before.position + i));
    expect((await sequenceState(t.client, "doc")).position).toBe(before.position + 3);
  });

  it("ends every Decode of a failed batched step with INTERNAL; each keeps what it delivered, the step leaves no trace", async () => {
    const ids = ["batch-a", "batch-b", "batch-c"];
    for (const id of ids) await t.client.prefill({ sequenceId: id, tokenIds: PROMPT });
    const before = await Promise.all(ids.map((id) => sequenceState(t.client, id)));
    failNextBatch();
    const outcomes = await Promise.all(
      ids.map(async (sequenceId) => {
        const { received, code } = await decodeOutcome(t.client, { sequenceId, maxNewTokens: 12, ignoreEos: true });
        return { code, delivered: received.length };
      }),
    );
    // A batch has at least two members, and all of them fail; a stream outside it carries on.
    expect(outcomes.filter((o) => o.code === status.INTERNAL).length).toBeGreaterThanOrEqual(2);
    for (const [i, outcome] of outcomes.entries()) {
      expect([status.INTERNAL, status.OK]).toContain(outcome.code);
      if (outcome.code === status.OK) expect(outcome.delivered).toBe(12);
      expect((await sequenceState(t.client, ids[i])).position).toBe(before[i].position + outcome.delivered);
    }
  });

  it("goes on serving: accounting is exact and every sequence decodes as a fresh one would", async () => {
    await expectExactAccounting(t.client);
    await expectDecodesLikeReference(t.client, "doc", PROMPT);
    await expectDecodesLikeReference(t.client, "bystander", PROMPT);
    for (const id of ["batch-a", "batch-b", "batch-c"]) await expectDecodesLikeReference(t.client, id, PROMPT);
  });
});
