import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EngineModel } from "../../src/engine/engine.js";
import type { ModelRunner } from "../../src/model/runners/model-runner.js";
import { healthOf } from "../support/health-probe.js";
import { loadTestModel } from "../support/test-model.js";
import { decodeAll, startTestServer, type TestServer } from "../support/test-server.js";

/** One prefill chunk this long is a single model run of a few hundred milliseconds on stories260K. */
const LONG_CHUNK = 1024;

/** The real runner, observed: `running` resolves once a step of LONG_CHUNK tokens has been handed to the model. */
function observeLongStep(model: EngineModel): { model: EngineModel; running: Promise<void> } {
  let started!: () => void;
  const running = new Promise<void>((resolve) => (started = resolve));
  const runner: ModelRunner = Object.create(model.runner);
  runner.run = (input) => {
    const step = model.runner.run(input);
    if (input.tokens.length === LONG_CHUNK) started();
    return step;
  };
  return { model: { ...model, runner }, running };
}

/**
 * The model runs off the event loop (docs/worker-threads.md): while one long
 * step runs, health checks and Stats are answered; with a second session
 * thread a decode of another sequence goes on too, and with one it waits.
 */
describe.each([
  { threads: 1, first: ["health SERVING", "stats long,short"], then: ["prefill", "decode 4"] },
  { threads: 2, first: ["decode 4", "health SERVING", "stats long,short"], then: ["prefill"] },
])("while the model runs a long step ($threads session threads)", ({ threads, first, then }) => {
  let t: TestServer;
  let running: Promise<void>;

  beforeAll(async () => {
    const observed = observeLongStep(await loadTestModel(threads));
    running = observed.running;
    t = await startTestServer(observed.model, { prefillChunkTokens: LONG_CHUNK, maxSequenceTokens: 2 * LONG_CHUNK, allowPastContext: true });
    await t.client.prefill({ sequenceId: "short", tokenIds: [1, 403] });
  });
  afterAll(() => t.close());

  it("answers health and Stats before the step ends", async () => {
    const answered: string[] = [];
    const tokenIds = Array.from({ length: LONG_CHUNK }, (_, i) => (i === 0 ? 1 : 3 + ((i * 7919) % 500)));
    const prefill = t.client.prefill({ sequenceId: "long", tokenIds }).then((reply) => {
      answered.push("prefill");
      return reply;
    });
    await running;
    const health = healthOf(t.address, "kvwarden.v1.KvCache").then((state) => answered.push(`health ${state}`));
    const stats = t.client.stats().then((reply) => answered.push(`stats ${reply.sequences.map((s) => s.sequenceId).sort().join(",")}`));
    const decode = decodeAll(t.client, { sequenceId: "short", maxNewTokens: 4, ignoreEos: true }).then((tokens) => answered.push(`decode ${tokens.length}`));
    await Promise.all([prefill, health, stats, decode]);
    expect(answered.slice(0, first.length).sort()).toEqual(first);
    expect(answered.slice(first.length)).toEqual(then);
    expect((await prefill).position).toBe(LONG_CHUNK);
  });
});
