import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadTestModel } from "../support/test-model.js";
import { decodeAll, decodeCancelledAfter, decodeOutcome, startTestServer, statusOf, type TestServer } from "../support/test-server.js";

const LONG = { maxNewTokens: 400, ignoreEos: true };

describe("concurrency, cancellation and deadlines", () => {
  let t: TestServer;
  /** The greedy continuation of BOS without stopping: the oracle for interrupted streams. */
  let greedy: number[];

  const positionOf = async (sequenceId: string) => (await t.client.stats({ sequenceId })).sequences[0].position;

  beforeAll(async () => {
    t = await startTestServer(await loadTestModel());
    await t.client.prefill({ sequenceId: "oracle", tokenIds: [1], text: "" });
    greedy = (await decodeAll(t.client, { sequenceId: "oracle", ...LONG })).map((m) => m.tokenId);
  });
  afterAll(() => t.close());

  it("decodes different sequences concurrently, each exactly as alone", async () => {
    const ids = ["c0", "c1", "c2", "c3"];
    await Promise.all(ids.map((sequenceId) => t.client.prefill({ sequenceId, tokenIds: [1], text: "" })));
    const streams = await Promise.all(ids.map((sequenceId) => decodeAll(t.client, { sequenceId, maxNewTokens: 60, ignoreEos: true })));
    for (const messages of streams) expect(messages.map((m) => m.tokenId)).toEqual(greedy.slice(0, 60));
  });

  it("answers ABORTED to a second mutation of a sequence that is decoding, and lets reads through", async () => {
    await t.client.prefill({ sequenceId: "busy", tokenIds: [1], text: "" });
    let streaming!: () => void;
    const firstToken = new Promise<void>((resolve) => (streaming = resolve));
    const done = decodeOutcome(t.client, { sequenceId: "busy", stopTokenIds: [], ...LONG }, (_, received) => received === 1 && streaming());
    await firstToken;
    const results = await Promise.all([
      statusOf(t.client.prefill({ sequenceId: "busy", tokenIds: [5], text: "" })),
      statusOf(decodeAll(t.client, { sequenceId: "busy", maxNewTokens: 1 })),
      statusOf(t.client.evict({ sequenceId: "busy", eviction: { policy: "streaming_llm", maxTokens: 8, pooling: 0, groupReduction: 0, skipLayers: [], basePolicy: "" } })),
      statusOf(t.client.release("busy")),
    ]);
    for (const result of results) expect(result).toMatchObject({ code: status.ABORTED, details: expect.stringContaining("busy") });
    expect(await positionOf("busy")).toBeGreaterThan(1);
    const decoded = await done;
    expect(decoded.code).toBe(status.OK);
    expect(decoded.received.map((m) => m.tokenId)).toEqual(greedy);
  });

  it("stops decoding at once when the client cancels; streamed tokens stay and decoding continues from them", async () => {
    await t.client.prefill({ sequenceId: "cancel", tokenIds: [1], text: "" });
    const ended = await decodeCancelledAfter(t.client, { sequenceId: "cancel", stopTokenIds: [], ...LONG }, 5);
    const received = ended.received.map((m) => m.tokenId);
    expect(ended.code).toBe(status.CANCELLED);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const position = await positionOf("cancel");
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await positionOf("cancel")).toBe(position);
    expect(position).toBeLessThan(400);
    expect(received).toEqual(greedy.slice(0, 5));
    const more = await decodeAll(t.client, { sequenceId: "cancel", maxNewTokens: 10, ignoreEos: true });
    expect(more[0].position).toBe(position);
    expect(more.map((m) => m.tokenId)).toEqual(greedy.slice(position - 1, position + 9));
  });

  it("stops at the deadline with DEADLINE_EXCEEDED and leaves a usable sequence", async () => {
    await t.client.prefill({ sequenceId: "deadline", tokenIds: [1], text: "" });
    const error = await statusOf(decodeAll(t.client, { sequenceId: "deadline", stopTokenIds: [], ...LONG }, { deadline: 40 }));
    expect(error.code).toBe(status.DEADLINE_EXCEEDED);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const position = await positionOf("deadline");
    expect(position).toBeLessThan(401);
    const more = await decodeAll(t.client, { sequenceId: "deadline", maxNewTokens: 5, ignoreEos: true });
    expect(more.map((m) => m.tokenId)).toEqual(greedy.slice(position - 1, position + 4));
  });
});
