import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadTestModel } from "../support/test-model.js";
import { startTestServer, statusOf, type TestServer } from "../support/test-server.js";
import { expectExactAccounting } from "../fuzz/support/accounting.js";
import { expectDecodesLikeReference } from "./support/reference-decode.js";
import { sequenceState } from "./support/sequence-state.js";
import { untilIdle } from "./support/until-idle.js";

const PROMPT = [1, 403, 407, 261, 378, 432];
/** Long enough, in chunks of 4, to run well past the deadline. */
const LONG = Array.from({ length: 3000 }, (_, i) => 5 + (i % 500));

describe("a deadline expires mid-prefill", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer(await loadTestModel(), { allowPastContext: true, maxSequenceTokens: 65_536, prefillChunkTokens: 4 });
  });
  afterAll(() => t.close());

  const prefillWithin = (sequenceId: string, ms: number) => t.client.prefill({ sequenceId, tokenIds: LONG }, { deadline: ms });

  it("stops the prefill and rolls it back: an existing sequence is as before, a new one is gone", async () => {
    await t.client.prefill({ sequenceId: "doc", tokenIds: PROMPT });
    const before = await sequenceState(t.client, "doc");

    expect((await statusOf(prefillWithin("doc", 150))).code).toBe(status.DEADLINE_EXCEEDED);
    expect((await statusOf(prefillWithin("fresh", 150))).code).toBe(status.DEADLINE_EXCEEDED);
    await untilIdle(t.client, "doc");
    await untilIdle(t.client, "fresh");

    expect(await sequenceState(t.client, "doc")).toEqual(before);
    expect((await t.client.stats()).sequences.map((s) => s.sequenceId)).toEqual(["doc"]);
    await expectExactAccounting(t.client);
    await expectDecodesLikeReference(t.client, "doc", PROMPT);
  });
});

describe("a deadline expires during a prefill's only step", () => {
  let t: TestServer;
  beforeAll(async () => {
    // One chunk: a single step of 800 tokens, which takes far longer than the deadline.
    t = await startTestServer(await loadTestModel(), { allowPastContext: true, maxSequenceTokens: 65_536, prefillChunkTokens: 4096 });
  });
  afterAll(() => t.close());

  it("keeps nothing of it: the caller saw DEADLINE_EXCEEDED, so a new sequence must not stay behind", async () => {
    expect((await statusOf(t.client.prefill({ sequenceId: "fresh", tokenIds: LONG.slice(0, 800) }, { deadline: 20 }))).code).toBe(status.DEADLINE_EXCEEDED);
    await untilIdle(t.client, "fresh");
    expect((await t.client.stats()).sequences).toEqual([]);
    await expectExactAccounting(t.client);
  });
});
