import { status } from "@grpc/grpc-js";
import { beforeAll, describe, expect, it } from "vitest";
import type { EngineModel } from "../../src/engine/engine.js";
import { loadTestModel } from "../support/test-model.js";
import { decodeAll, startTestServer, statusOf } from "../support/test-server.js";
import { expectExactAccounting } from "../fuzz/support/accounting.js";

const PROMPT = Array.from({ length: 200 }, (_, i) => 5 + i);

describe("the KV budget exactly full", () => {
  let model: EngineModel;
  let full: number;
  beforeAll(async () => {
    model = await loadTestModel();
    // What two 200-token sequences hold: the budget of the server below, to the byte.
    const probe = await startTestServer(model);
    await probe.client.prefill({ sequenceId: "a", tokenIds: PROMPT });
    await probe.client.prefill({ sequenceId: "b", tokenIds: PROMPT });
    full = Number((await probe.client.stats()).kvBytesUsed);
    await probe.close();
  });

  /** A server whose budget a and b fill to the byte. */
  const fullServer = async () => {
    const t = await startTestServer(model, { kvBudgetBytes: full });
    await t.client.prefill({ sequenceId: "a", tokenIds: PROMPT });
    await t.client.prefill({ sequenceId: "b", tokenIds: PROMPT });
    expect((await t.client.stats()).kvBytesUsed).toBe(BigInt(full));
    return t;
  };

  it("refuses growth with RESOURCE_EXHAUSTED but still evicts: shrinking needs no free room", async () => {
    const t = await fullServer();
    try {
      expect((await statusOf(t.client.prefill({ sequenceId: "c", tokenIds: [1] }))).code).toBe(status.RESOURCE_EXHAUSTED);
      const evicted = await t.client.evict({ sequenceId: "a", eviction: { policy: "streaming_llm", maxTokens: 48 } });
      expect(evicted.eviction!.bytesAfter).toBeLessThan(evicted.eviction!.bytesBefore);
      await expectExactAccounting(t.client);
    } finally {
      await t.close();
    }
  });

  it("decodes under a decode budget, which compresses the sequence before its first token with nothing free", async () => {
    const t = await fullServer();
    try {
      const tokens = await decodeAll(t.client, { sequenceId: "b", maxNewTokens: 4, ignoreEos: true, eviction: { policy: "h2o", maxTokens: 64 } });
      expect(tokens).toHaveLength(4);
      expect(tokens[0].eviction?.applied).toBe(true);
      await expectExactAccounting(t.client);
    } finally {
      await t.close();
    }
  });
});
