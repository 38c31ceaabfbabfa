import { status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { loadTestModel } from "../support/test-model.js";
import { decodeAll, startTestServer, statusOf } from "../support/test-server.js";

/** Counterexamples the structured fuzz found, kept as plain tests. */
describe("fuzz regressions", () => {
  it("a Decode refused before its first token does not install its decode budget", async () => {
    const model = await loadTestModel();
    const prompt = Array.from({ length: 16 }, (_, i) => 5 + i);
    // The budget is what the sequence holds once a token is pending: feeding that token needs more.
    const probe = await startTestServer(model);
    await probe.client.prefill({ sequenceId: "a", tokenIds: prompt });
    await decodeAll(probe.client, { sequenceId: "a", maxNewTokens: 1 });
    const held = Number((await probe.client.stats()).kvBytesUsed);
    await probe.close();

    const t = await startTestServer(model, { kvBudgetBytes: held });
    try {
      await t.client.prefill({ sequenceId: "a", tokenIds: prompt });
      await decodeAll(t.client, { sequenceId: "a", maxNewTokens: 1 });
      const before = (await t.client.stats({ sequenceId: "a", includePositions: true })).sequences[0];
      const refused = await statusOf(decodeAll(t.client, { sequenceId: "a", maxNewTokens: 1, eviction: { policy: "streaming_llm", maxTokens: 8 } }));
      expect(refused.code).toBe(status.RESOURCE_EXHAUSTED);
      const after = (await t.client.stats({ sequenceId: "a", includePositions: true })).sequences[0];
      expect({ ...after, idleMs: 0n }).toEqual({ ...before, idleMs: 0n });
    } finally {
      await t.close();
    }
  });
});
