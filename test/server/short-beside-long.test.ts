import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EngineTelemetry } from "../../src/telemetry/engine-telemetry.js";
import { loadTestModel } from "../support/test-model.js";
import { decodeAll, decodeOutcome, startTestServer, type TestServer } from "../support/test-server.js";

/** A long context (past stories260K's trained 512, which the graph allows) and a short one. */
const LONG_PROMPT = Array.from({ length: 2_500 }, (_, i) => (i === 0 ? 1 : 3 + ((i * 7919) % 500)));
const SHORT_PROMPT = [1, 403, 407];
const SHORT_TOKENS = 40;

describe("a short stream beside a long one", () => {
  let t: TestServer;
  const decodeBatches: number[] = [];
  beforeAll(async () => {
    const telemetry = new EngineTelemetry({ step: (kind, _seconds, sequences) => kind === "decode" && decodeBatches.push(sequences) });
    t = await startTestServer(await loadTestModel(), { allowPastContext: true, maxSequenceTokens: 10_000, prefillChunkTokens: 512, telemetry });
  });
  afterAll(async () => {
    await t.close();
  });

  it("steps apart from it (no padding to its length) and more often, generating what it generates alone", async () => {
    await t.client.prefill({ sequenceId: "short-alone", tokenIds: SHORT_PROMPT });
    const alone = (await decodeAll(t.client, { sequenceId: "short-alone", maxNewTokens: SHORT_TOKENS, ignoreEos: true })).map((m) => m.tokenId);

    await t.client.prefill({ sequenceId: "long", tokenIds: LONG_PROMPT });
    await t.client.prefill({ sequenceId: "short", tokenIds: SHORT_PROMPT });
    let longTokens = 0;
    let twoTokens!: () => void;
    const longStreaming = new Promise<void>((resolve) => (twoTokens = resolve));
    let cancelLong!: () => void;
    const longEnded = decodeOutcome(t.client, { sequenceId: "long", maxNewTokens: 5_000, ignoreEos: true }, (_, received, cancel) => {
      longTokens = received;
      cancelLong = cancel;
      if (received === 2) twoTokens();
    });
    await longStreaming;

    decodeBatches.length = 0;
    const longBefore = longTokens;
    const beside = (await decodeAll(t.client, { sequenceId: "short", maxNewTokens: SHORT_TOKENS, ignoreEos: true })).map((m) => m.tokenId);
    const longDuring = longTokens - longBefore;
    cancelLong();
    await longEnded;

    expect(beside).toEqual(alone);
    // Never one graph run for both: the short one would attend the long one's 2,500 entries of padding.
    expect(decodeBatches.every((size) => size === 1)).toBe(true);
    // Its steps cost a third of the long one's or less (1024 + a few dozen slots vs 1024 + 2,500 or more), so it takes three or more for each of the long one's.
    expect(longDuring).toBeLessThan(SHORT_TOKENS / 2);
  });
});
