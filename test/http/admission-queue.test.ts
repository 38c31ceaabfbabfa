import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { EngineModel } from "../../src/engine/engine.js";
import { Engine } from "../../src/engine/engine.js";
import { loadTestModel } from "../support/test-model.js";
import { DEFAULT_TEST_OPTIONS } from "../support/test-server.js";
import { postJson, startHttpTestServer, type HttpTestServer } from "../support/http-test-server.js";

const MODEL = "stories260K";
const HELD = Array.from({ length: 100 }, (_, i) => 5 + i);
const PROMPT = "Once upon a time there was a little girl. ".repeat(10);

describe("the admission queue behind the OpenAI HTTP API", () => {
  let model: EngineModel;
  let one: number;
  let sidecar: HttpTestServer | undefined;
  beforeAll(async () => {
    model = await loadTestModel();
    const probe = new Engine(model, DEFAULT_TEST_OPTIONS);
    one = (await probe.prefill({ sequenceId: "held", tokenIds: HELD })).kvBytes;
    probe.close();
  });
  afterEach(async () => {
    await sidecar?.close();
    sidecar = undefined;
  });

  /** A server whose budget holds one HELD sequence and a half, with one held: a completion of PROMPT must wait. */
  const serverHolding = async (maxQueue: number) => {
    sidecar = await startHttpTestServer(model, { kvBudgetBytes: Math.floor(one * 1.5), maxQueue });
    await sidecar.engine.prefill({ sequenceId: "held", tokenIds: HELD });
    return sidecar;
  };
  const queued = (server: HttpTestServer, n: number) => vi.waitFor(() => expect(server.engine.requestsWaiting).toBe(n), { timeout: 10_000, interval: 5 });

  it("holds a completion until memory frees, then answers it (the official openai client)", async () => {
    const server = await serverHolding(4);
    const reply = server.openai().completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 8, temperature: 0 });
    await queued(server, 1);
    await server.engine.release("held");
    const completion = await reply;
    expect(completion.usage?.completion_tokens).toBe(8);
    expect(server.engine.sequenceCount).toBe(0);
  });

  it("drops a queued completion whose client goes away, leaving nothing behind", async () => {
    const server = await serverHolding(4);
    const controller = new AbortController();
    const reply = postJson(`${server.baseUrl}/v1/completions`, { model: MODEL, prompt: PROMPT, max_tokens: 8 }, {}, controller.signal);
    await queued(server, 1);
    controller.abort();
    await expect(reply).rejects.toThrow();
    await queued(server, 0);
    expect(server.engine.stats().sequences.map((s) => s.sequenceId)).toEqual(["held"]);
  });

  it("answers 429 with Retry-After and OpenAI's error object when the queue is full", async () => {
    const server = await serverHolding(1);
    const waiting = postJson(`${server.baseUrl}/v1/completions`, { model: MODEL, prompt: PROMPT, max_tokens: 1 });
    await queued(server, 1);
    const refused = await postJson(`${server.baseUrl}/v1/completions`, { model: MODEL, prompt: PROMPT, max_tokens: 1 });
    expect(refused.status).toBe(429);
    expect(refused.headers.get("retry-after")).toMatch(/^\d+$/);
    const body = (await refused.json()) as { error: { message: string } };
    expect(body.error.message).toMatch(/the admission queue is full \(1 calls already wait for KV memory, --max-queue\)$/);
    await server.engine.release("held");
    expect((await waiting).status).toBe(200);
  });
});
