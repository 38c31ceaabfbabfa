import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadTestModel } from "../support/test-model.js";
import { call, startTestServer, statusOf, type TestServer } from "../support/test-server.js";

describe("request ids make retries safe", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer(await loadTestModel());
  });
  afterAll(() => t.close());

  const position = async (sequenceId: string) => (await call(t.client, t.client.stats, { sequenceId })).sequences[0].position;

  it("answers a retried Prefill from its stored result instead of feeding the tokens twice", async () => {
    const request = { sequenceId: "story", tokenIds: [1, 403, 407, 261], requestId: "prefill-1" };
    const first = await call(t.client, t.client.prefill, request);
    const retries = await Promise.all([1, 2, 3].map(() => call(t.client, t.client.prefill, request)));
    for (const retry of retries) expect(retry).toEqual(first);
    expect(await position("story")).toBe(4);
    // Without a request id each call is new.
    await call(t.client, t.client.prefill, { sequenceId: "story", tokenIds: [378] });
    expect(await position("story")).toBe(5);
  });

  it("joins a retry sent while the first attempt still runs (a client that gave up waiting)", async () => {
    const request = { sequenceId: "long", tokenIds: Array.from({ length: 300 }, (_, i) => 5 + i), requestId: "prefill-2" };
    const [a, b] = await Promise.all([call(t.client, t.client.prefill, request), call(t.client, t.client.prefill, request)]);
    expect(a).toEqual(b);
    expect(await position("long")).toBe(300);
  });

  it("runs a retry of a failed Prefill again, and refuses a request id reused for another request", async () => {
    const bad = await statusOf(call(t.client, t.client.prefill, { sequenceId: "retry", tokenIds: [100_000], requestId: "prefill-3" }));
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
    expect((await call(t.client, t.client.prefill, { sequenceId: "retry", tokenIds: [1], requestId: "prefill-3b" })).position).toBe(1);
    const reused = await statusOf(call(t.client, t.client.prefill, { sequenceId: "other", tokenIds: [1], requestId: "prefill-1" }));
    expect(reused).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining("already used") });
    const long = await statusOf(call(t.client, t.client.prefill, { sequenceId: "x", tokenIds: [1], requestId: "r".repeat(257) }));
    expect(long.code).toBe(status.INVALID_ARGUMENT);
  });

  it("answers retried Evict and Release from their stored results", async () => {
    const eviction = { policy: "streaming_llm", maxTokens: 8 };
    const evicted = await call(t.client, t.client.evict, { sequenceId: "long", eviction, requestId: "evict-1" });
    expect(evicted.eviction?.applied).toBe(true);
    expect(await call(t.client, t.client.evict, { sequenceId: "long", eviction, requestId: "evict-1" })).toEqual(evicted);

    const released = await call(t.client, t.client.release, { sequenceId: "story", requestId: "release-1" });
    expect(released.found).toBe(true);
    expect(await call(t.client, t.client.release, { sequenceId: "story", requestId: "release-1" })).toEqual(released);
    expect(await call(t.client, t.client.release, { sequenceId: "story" })).toEqual({ found: false, freedBytes: 0n });
  });
});
