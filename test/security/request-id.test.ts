import { status } from "@grpc/grpc-js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { EngineModel } from "../../src/engine/engine.js";
import { KvwardenClient } from "../../src/client/index.js";
import { loadTestModel } from "../support/test-model.js";
import { startTestServer, statusOf, type TestServer } from "../support/test-server.js";
import { clientOf, startSecureServer, type SecureServer } from "./support/secure-server.js";

describe("request ids make retries safe", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer(await loadTestModel());
  });
  afterAll(() => t.close());

  const position = async (sequenceId: string) => (await t.client.stats({ sequenceId })).sequences[0].position;

  it("answers a retried Prefill from its stored result instead of feeding the tokens twice", async () => {
    const request = { sequenceId: "story", tokenIds: [1, 403, 407, 261], requestId: "prefill-1" };
    const first = await t.client.prefill(request);
    const retries = await Promise.all([1, 2, 3].map(() => t.client.prefill(request)));
    for (const retry of retries) expect(retry).toEqual(first);
    expect(await position("story")).toBe(4);
    // Without a request id each call is new.
    await t.client.prefill({ sequenceId: "story", tokenIds: [378] });
    expect(await position("story")).toBe(5);
  });

  it("joins a retry sent while the first attempt still runs (a client that gave up waiting)", async () => {
    const request = { sequenceId: "long", tokenIds: Array.from({ length: 300 }, (_, i) => 5 + i), requestId: "prefill-2" };
    const [a, b] = await Promise.all([t.client.prefill(request), t.client.prefill(request)]);
    expect(a).toEqual(b);
    expect(await position("long")).toBe(300);
  });

  it("runs a retry of a failed Prefill again, and refuses a request id reused for another request", async () => {
    const bad = await statusOf(t.client.prefill({ sequenceId: "retry", tokenIds: [100_000], requestId: "prefill-3" }));
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
    expect((await t.client.prefill({ sequenceId: "retry", tokenIds: [1], requestId: "prefill-3b" })).position).toBe(1);
    const reused = await statusOf(t.client.prefill({ sequenceId: "other", tokenIds: [1], requestId: "prefill-1" }));
    expect(reused).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining("already used") });
    const long = await statusOf(t.client.prefill({ sequenceId: "x", tokenIds: [1], requestId: "r".repeat(257) }));
    expect(long.code).toBe(status.INVALID_ARGUMENT);
  });

  it("answers retried Evict and Release from their stored results", async () => {
    const eviction = { policy: "streaming_llm", maxTokens: 8 };
    const evicted = await t.client.evict({ sequenceId: "long", eviction, requestId: "evict-1" });
    expect(evicted.eviction?.applied).toBe(true);
    expect(await t.client.evict({ sequenceId: "long", eviction, requestId: "evict-1" })).toEqual(evicted);

    const released = await t.client.release("story", { requestId: "release-1" });
    expect(released.found).toBe(true);
    expect(await t.client.release("story", { requestId: "release-1" })).toEqual(released);
    expect(await t.client.release("story")).toEqual({ found: false, freedBytes: 0n });
  });
});

describe("a request id stands for one whole request", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer(await loadTestModel());
  });
  afterAll(() => t.close());

  const position = async (sequenceId: string) => (await t.client.stats({ sequenceId })).sequences[0].position;
  const refusal = (promise: Promise<unknown>) => statusOf(promise).then(({ code, details }) => ({ code, reused: details.includes("already used") }));
  const REFUSED = { code: status.INVALID_ARGUMENT, reused: true };

  it("refuses a Prefill whose tokens, text, logprobs or eviction differ from the first one under its id, and feeds nothing", async () => {
    const first = { sequenceId: "doc", tokenIds: [1, 403, 407], requestId: "feed-1" };
    const stored = await t.client.prefill(first);
    for (const other of [
      { ...first, tokenIds: [1, 403, 408] },
      { sequenceId: "doc", text: "Once upon", requestId: "feed-1" },
      { ...first, returnLogprobs: true },
      { ...first, eviction: { policy: "streaming_llm", maxTokens: 2 } },
    ]) {
      expect(await refusal(t.client.prefill(other))).toEqual(REFUSED);
    }
    expect(await position("doc")).toBe(3);
    // The same request again is still a retry.
    expect(await t.client.prefill(first)).toEqual(stored);
  });

  it("refuses an Evict with another spec and a Fork to another new id under a used request id", async () => {
    await t.client.prefill({ sequenceId: "long", tokenIds: Array.from({ length: 20 }, (_, i) => 5 + i) });
    const evict = { sequenceId: "long", eviction: { policy: "streaming_llm", maxTokens: 12 }, requestId: "evict-1" };
    expect((await t.client.evict(evict)).eviction?.applied).toBe(true);
    const entries = async () => (await t.client.stats({ sequenceId: "long" })).sequences[0].entries;
    const kept = await entries();
    expect(await refusal(t.client.evict({ ...evict, eviction: { policy: "streaming_llm", maxTokens: 6 } }))).toEqual(REFUSED);
    expect(await entries()).toBe(kept);

    await t.client.fork("long", "copy-a", { requestId: "fork-1" });
    expect(await refusal(t.client.fork("long", "copy-b", { requestId: "fork-1" }))).toEqual(REFUSED);
    expect((await statusOf(t.client.stats({ sequenceId: "copy-b" }))).code).toBe(status.NOT_FOUND);
  });
});

describe("each tenant's request ids are its own, and expire", () => {
  const TOKENS = { alice: "alice-token-0123456789abcdef", bob: "bob-token-0123456789abcdef" };
  const folder = mkdtempSync(join(tmpdir(), "kvwarden-request-ids-"));
  let model: EngineModel;
  let sidecar: SecureServer;
  const clients: KvwardenClient[] = [];
  const client = (tenant: keyof typeof TOKENS) => {
    const made = clientOf(sidecar.address, TOKENS[tenant]);
    clients.push(made);
    return made;
  };
  const position = async (c: KvwardenClient, sequenceId: string) => (await c.stats({ sequenceId })).sequences[0].position;

  beforeAll(async () => {
    model = await loadTestModel();
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await sidecar.close();
  });
  afterAll(() => rmSync(folder, { recursive: true, force: true }));

  const start = async (requestLog: object) => {
    const text = Object.entries(TOKENS).map(([tenant, token]) => `${token} ${tenant}`).join("\n");
    sidecar = await startSecureServer(model, { tokens: { path: join(folder, "tokens"), text }, engine: { requestLog } });
  };

  it("keeps Alice's record through Bob's flood of 100,050 request ids; Bob's flood forgets only Bob's oldest", async () => {
    await start({ perTenant: 100 });
    const alice = client("alice");
    const bob = client("bob");
    const prefill = { sequenceId: "doc", tokenIds: [1, 403], requestId: "alice-1" };
    const stored = await alice.prefill(prefill);
    const bobPrefill = { sequenceId: "doc", tokenIds: [1, 403], requestId: "bob-1" };
    await bob.prefill(bobPrefill);
    // The flood runs on the engine as Bob (the same path a gRPC Release takes), so that 100,050 calls stay quick.
    for (let i = 0; i < 100_050; i++) await sidecar.engine.release("nothing", { caller: { tenant: "bob" }, requestId: `flood-${i}` });

    expect(await alice.prefill(prefill)).toEqual(stored);
    expect(await position(alice, "doc")).toBe(2);
    // Bob's own first id is past his bound: his retry runs again.
    expect((await bob.prefill(bobPrefill)).position).toBe(4);
  });

  it("recognises a retry until the TTL has passed since the first call, then runs it as new", async () => {
    let now = 0;
    await start({ ttlMs: 60_000, now: () => now });
    const alice = client("alice");
    const prefill = { sequenceId: "doc", tokenIds: [1, 403], requestId: "alice-ttl" };
    await alice.prefill(prefill);
    now = 59_999;
    expect((await alice.prefill(prefill)).position).toBe(2);
    now = 60_000;
    expect((await alice.prefill(prefill)).position).toBe(4);
    // Run again, it is remembered anew.
    expect((await alice.prefill(prefill)).position).toBe(4);
  });
});
