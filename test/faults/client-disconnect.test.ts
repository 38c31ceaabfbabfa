import { connect } from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DecodeRequest } from "../../src/gen/kvwarden/v1/kvwarden.js";
import { loadTestModel } from "../support/test-model.js";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { expectExactAccounting } from "../fuzz/support/accounting.js";
import { expectDecodesLikeReference } from "./support/reference-decode.js";
import { sequenceState } from "./support/sequence-state.js";
import { untilIdle } from "./support/until-idle.js";

const PROMPT = [1, 403, 407, 261, 378, 432];

/** Starts a Decode over a bare HTTP/2 connection and drops the connection (TCP and all) after `messages` messages. */
function decodeThenDisconnect(address: string, request: DecodeRequest, messages: number): Promise<number> {
  const session = connect(`http://${address}`);
  const stream = session.request({ ":method": "POST", ":path": "/kvwarden.v1.KvCache/Decode", "content-type": "application/grpc", te: "trailers" });
  const body = DecodeRequest.encode(request).finish();
  const frame = Buffer.alloc(5 + body.length); // gRPC framing: uncompressed flag, big-endian length, message
  frame.writeUInt32BE(body.length, 1);
  frame.set(body, 5);
  stream.end(frame);
  return new Promise((resolve) => {
    let received = 0;
    stream.on("data", () => {
      // A data chunk may carry several messages; what matters is that the stream is running.
      if (++received === messages) {
        session.destroy();
        resolve(received);
      }
    });
  });
}

describe("a client disconnects mid-stream", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer(await loadTestModel(), { allowPastContext: true, maxSequenceTokens: 100_000 });
  });
  afterAll(() => t.close());

  it("stops the Decode, frees the sequence for the next call and disturbs no other", async () => {
    await t.client.prefill({ sequenceId: "story", tokenIds: PROMPT });
    await t.client.prefill({ sequenceId: "bystander", tokenIds: PROMPT });
    const bystander = await sequenceState(t.client, "bystander");

    await decodeThenDisconnect(t.address, DecodeRequest.fromPartial({ sequenceId: "story", maxNewTokens: 50_000, ignoreEos: true }), 3);
    await untilIdle(t.client, "story");
    const { position } = await sequenceState(t.client, "story");
    expect(position).toBeGreaterThan(PROMPT.length);
    expect(position).toBeLessThan(PROMPT.length + 5_000);

    expect(await sequenceState(t.client, "bystander")).toEqual(bystander);
    await expectExactAccounting(t.client);
    await expectDecodesLikeReference(t.client, "story", PROMPT);
    await expectDecodesLikeReference(t.client, "bystander", PROMPT);
  });
});
