import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DecodeRequest, KvwardenClient } from "../../src/client/index.js";
import { loadTestModel } from "../support/test-model.js";
import { decodeAll, startTestServer, type TestServer } from "../support/test-server.js";

const PROMPT = [1, 403, 407, 261, 378, 432];
const MAX_NEW_TOKENS = 4_000;
/** A small HTTP/2 window, so a client that stops reading fills it after a few hundred tokens rather than thousands. */
const WINDOW_BYTES = 2_048;

const positionOf = async (client: KvwardenClient, sequenceId: string) => (await client.stats({ sequenceId })).sequences[0].position;

/** Polls until the sequence's position holds still across `quietPolls` reads, and returns it. */
async function untilStill(client: KvwardenClient, sequenceId: string, quietPolls = 5): Promise<number> {
  let last = -1;
  let still = 0;
  while (still < quietPolls) {
    await new Promise((resolve) => setTimeout(resolve, 40));
    const position = await positionOf(client, sequenceId);
    still = position === last ? still + 1 : 0;
    last = position;
  }
  return last;
}

describe("Decode backpressure: a client that stops reading", () => {
  let t: TestServer;
  let slowReader: KvwardenClient;
  beforeAll(async () => {
    t = await startTestServer(await loadTestModel(), { allowPastContext: true, maxSequenceTokens: 10_000 });
    slowReader = new KvwardenClient(t.address, { channelOptions: { "grpc-node.flow_control_window": WINDOW_BYTES } });
  });
  afterAll(async () => {
    slowReader.close();
    await t.close();
  });

  it("pauses its sequence until it reads again, then finishes with the undisturbed tokens, while others decode", async () => {
    const request = { maxNewTokens: MAX_NEW_TOKENS, ignoreEos: true };
    await t.client.prefill({ sequenceId: "undisturbed", tokenIds: PROMPT });
    const expected = (await decodeAll(t.client, { sequenceId: "undisturbed", ...request })).map((m) => m.tokenId);
    await t.client.release("undisturbed");

    await t.client.prefill({ sequenceId: "paused", tokenIds: PROMPT });
    await t.client.prefill({ sequenceId: "bystander", tokenIds: PROMPT });
    // The generated client's stream: this test pauses reading it (HTTP/2 flow control), which an async iterator cannot.
    const stream = slowReader.raw.decode(DecodeRequest.fromPartial({ sequenceId: "paused", ...request }));
    const received: number[] = [];
    stream.on("data", (message: { tokenId: number }) => {
      received.push(message.tokenId);
      stream.pause();
    });
    const ended = new Promise<void>((resolve, reject) => stream.on("end", resolve).on("error", reject));

    const stalledAt = await untilStill(t.client, "paused");
    expect(stalledAt).toBeLessThan(PROMPT.length + MAX_NEW_TOKENS / 2);

    // Another client's decode runs to its end meanwhile, and the paused sequence does not move.
    const bystander = await decodeAll(t.client, { sequenceId: "bystander", maxNewTokens: 100, ignoreEos: true });
    expect(bystander.map((m) => m.tokenId)).toEqual(expected.slice(0, 100));
    expect(await positionOf(t.client, "paused")).toBe(stalledAt);

    stream.removeAllListeners("data");
    stream.on("data", (message: { tokenId: number }) => received.push(message.tokenId));
    stream.resume();
    await ended;
    expect(received).toEqual(expected);
    expect(await positionOf(t.client, "paused")).toBe(PROMPT.length + MAX_NEW_TOKENS);
  }, 180_000); // 8,000 decode steps past 4,000 cached: about 25 s on an idle 2-core machine, minutes on a loaded one
});
