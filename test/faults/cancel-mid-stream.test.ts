import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadTestModel } from "../support/test-model.js";
import { decodeCancelledAfter, startTestServer, type TestServer } from "../support/test-server.js";
import { expectExactAccounting } from "../fuzz/support/accounting.js";
import { expectDecodesLikeReference } from "./support/reference-decode.js";
import { sequenceState } from "./support/sequence-state.js";
import { untilIdle } from "./support/until-idle.js";

const PROMPT = [1, 403, 407, 261, 378, 432];

describe("a client cancels a Decode mid-stream", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer(await loadTestModel(), { allowPastContext: true });
  });
  afterAll(() => t.close());

  it("stops generating, keeps what was generated, frees the sequence for the next call and disturbs no other", async () => {
    await t.client.prefill({ sequenceId: "story", tokenIds: PROMPT });
    await t.client.prefill({ sequenceId: "bystander", tokenIds: PROMPT });
    const bystander = await sequenceState(t.client, "bystander");

    const ended = await decodeCancelledAfter(t.client, { sequenceId: "story", maxNewTokens: 400, ignoreEos: true }, 5);
    const received = ended.received.length;
    expect(ended.code).toBe(status.CANCELLED);
    await untilIdle(t.client, "story");

    const { position } = await sequenceState(t.client, "story");
    // What the client took, perhaps a token or two the server had produced when the cancellation arrived; far from 400.
    expect(position).toBeGreaterThanOrEqual(PROMPT.length + received);
    expect(position).toBeLessThan(PROMPT.length + 50);
    expect(await sequenceState(t.client, "bystander")).toEqual(bystander);
    await expectExactAccounting(t.client);
    await expectDecodesLikeReference(t.client, "story", PROMPT);
    await expectDecodesLikeReference(t.client, "bystander", PROMPT);
  });
});
