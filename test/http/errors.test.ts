import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EngineModel } from "../../src/engine/engine.js";
import { AuthTokens } from "../../src/server/auth-tokens.js";
import { Authenticator } from "../../src/server/authenticator.js";
import { KvwardenServer } from "../../src/sidecar/kvwarden-server.js";
import { loadTestModel } from "../support/test-model.js";
import { postJson, startHttpTestServer, type HttpTestServer } from "../support/http-test-server.js";

const MODEL = "stories260K";
const ALICE = "alice-token-0123456789abcdef";
const BOB = "bob-token-0123456789abcdefgh";

/** The HTTP API's refusals: OpenAI's error object, the right status, and nothing changed by a failed request. */
describe("OpenAI HTTP API errors", () => {
  let model: EngineModel;
  let sidecar: HttpTestServer;
  const dir = mkdtempSync(join(tmpdir(), "kvwarden-http-auth-"));

  beforeAll(async () => {
    model = await loadTestModel();
    const tokensFile = join(dir, "tokens");
    writeFileSync(tokensFile, `${ALICE} alice\n${BOB} bob\n`);
    const authenticator = new Authenticator({ tokens: new AuthTokens(tokensFile) });
    // Each tenant may hold one sequence: n = 2 needs a second one.
    sidecar = await startHttpTestServer(model, { tenantQuota: { sequences: 1 } }, { authenticator, maxRequestBytes: 4096 });
  });
  afterAll(async () => {
    await sidecar?.close();
    await model?.runner.release();
    rmSync(dir, { recursive: true, force: true });
  });

  const failure = (promise: Promise<unknown>) => promise.then(() => expect.unreachable("the request should fail"), (error: unknown) => error as InstanceType<typeof OpenAI.APIError>);

  it("401 without a valid bearer token; the same tokens and tenants as gRPC", async () => {
    const refused = await failure(sidecar.openai("not-a-listed-token-000000").models.list());
    expect(refused).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(refused).toMatchObject({ status: 401, type: "authentication_error", code: "unauthenticated", message: "401 the bearer token is not valid" });
    const missing = await fetch(`${sidecar.baseUrl}/v1/models`);
    expect(missing.status).toBe(401);
    expect(await missing.json()).toEqual({
      error: { message: "authentication is required: send metadata 'authorization: Bearer TOKEN'", type: "authentication_error", param: null, code: "unauthenticated" },
    });
    // Two tokens are one too many, even if both are valid (as over gRPC).
    const twice = await new Promise<string>((resolve, reject) => {
      const { port } = new URL(sidecar.baseUrl);
      const socket = connect(Number(port), "127.0.0.1", () =>
        socket.end(`GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ALICE}\r\nAuthorization: Bearer ${BOB}\r\nConnection: close\r\n\r\n`),
      );
      let reply = "";
      socket.setEncoding("utf8").on("data", (chunk: string) => (reply += chunk));
      socket.on("end", () => resolve(reply)).on("error", reject);
    });
    expect(twice.split("\r\n")[0]).toBe("HTTP/1.1 401 Unauthorized");
    expect(JSON.parse(twice.slice(twice.indexOf("\r\n\r\n") + 4)).error.message).toBe("the authorization metadata must be one 'Bearer TOKEN' value");
    // A body that breaks the schema is still refused for its credentials first.
    expect((await postJson(`${sidecar.baseUrl}/v1/completions`, { model: MODEL, prompt: 5 })).status).toBe(401);

    // Sessions are per tenant: bob cannot see or end alice's.
    await sidecar.openai(ALICE).completions.create({ model: MODEL, prompt: "Once upon a time", max_tokens: 2, kv_session: "mine" } as never);
    const bobs = await fetch(`${sidecar.baseUrl}/v1/kv_sessions/mine`, { method: "DELETE", headers: { authorization: `Bearer ${BOB}` } });
    expect(bobs.status).toBe(404);
    const alices = await fetch(`${sidecar.baseUrl}/v1/kv_sessions/mine`, { method: "DELETE", headers: { authorization: `Bearer ${ALICE}` } });
    expect(alices.status).toBe(200);
  });

  it("400 naming the field that breaks its rule", async () => {
    const client = sidecar.openai(ALICE);
    const cases: [Record<string, unknown>, string, string][] = [
      [{ max_tokens: 0 }, "max_tokens", "max_tokens must be >= 1"],
      [{ temperature: "hot" }, "temperature", "temperature must be number,null"],
      [{ n: 9 }, "n", "n must be <= 8"],
      [{ frequency_penalty: 1 }, "frequency_penalty", "unknown field 'frequency_penalty': this server does not support it"],
      [{ stream_options: { include_usage: true } }, "stream_options", "stream_options is only allowed with stream: true"],
    ];
    for (const [fields, param, message] of cases) {
      const refused = await failure(client.completions.create({ model: MODEL, prompt: "Once", ...fields } as never));
      expect(refused).toMatchObject({ status: 400, type: "invalid_request_error", param, message: `400 ${message}` });
    }
    const noPrompt = await failure(client.completions.create({ model: MODEL } as never));
    expect(noPrompt).toMatchObject({ status: 400, param: "prompt", message: "400 'prompt' is required" });
    // Engine refusals keep their gRPC status as the code.
    const chat = await failure(client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "hi" }] }));
    expect(chat).toMatchObject({ status: 400, code: "invalid_argument", message: "400 messages need a chat template, and this model's tokenizer has none" });
    const notJson = await fetch(`${sidecar.baseUrl}/v1/completions`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${ALICE}` }, body: "{bad" });
    expect(notJson.status).toBe(400);
    expect(await notJson.json()).toMatchObject({ error: { type: "invalid_request_error" } });
  });

  it("413 for a body over the limit, unread", async () => {
    const response = await postJson(`${sidecar.baseUrl}/v1/completions`, { model: MODEL, prompt: "x".repeat(20_000) }, { authorization: `Bearer ${ALICE}` });
    expect(response.status).toBe(413);
    expect(await response.json()).toMatchObject({ error: { type: "invalid_request_error", code: "fst_err_ctp_body_too_large" } });
  });

  it("404 for an unknown model or path", async () => {
    const client = sidecar.openai(ALICE);
    const unknown = await failure(client.completions.create({ model: "gpt-9", prompt: "Once" }));
    expect(unknown).toBeInstanceOf(OpenAI.NotFoundError);
    expect(unknown).toMatchObject({ status: 404, param: "model", code: "model_not_found", message: "404 the model 'gpt-9' does not exist; this server serves 'stories260K'" });
    expect(await failure(client.models.retrieve("gpt-9"))).toMatchObject({ status: 404, code: "model_not_found" });
    expect(await client.models.retrieve(MODEL)).toMatchObject({ id: MODEL, object: "model", owned_by: "kvwarden" });
    const path = await fetch(`${sidecar.baseUrl}/v1/embeddings`, { method: "POST", headers: { authorization: `Bearer ${ALICE}` } });
    expect(path.status).toBe(404);
  });

  it("429 with Retry-After when the tenant's quota is spent, leaving nothing behind", async () => {
    const response = await postJson(`${sidecar.baseUrl}/v1/completions`, { model: MODEL, prompt: "Once upon a time", max_tokens: 2, n: 2 }, { authorization: `Bearer ${BOB}` });
    expect(response.status).toBe(429);
    expect(response.headers.get("retry-after")).toBe("1");
    expect(await response.json()).toEqual({
      error: { message: "the tenant holds 1 sequences, its quota; release one first", type: "rate_limit_error", param: null, code: "resource_exhausted" },
    });
    expect(sidecar.engine.stats({}, { caller: { tenant: "bob" } }).tenantSequenceCount).toBe(0);
    const refused = await failure(sidecar.openai(BOB).completions.create({ model: MODEL, prompt: "Once", max_tokens: 2, n: 2 }));
    expect(refused).toBeInstanceOf(OpenAI.RateLimitError);
  });

  it("503 with Retry-After while the model loads", async () => {
    const loading = new KvwardenServer(new Promise(() => {}), { executionProvider: "cpu", version: "test" });
    const port = await loading.listenHttp("127.0.0.1:0");
    try {
      const response = await postJson(`http://127.0.0.1:${port}/v1/completions`, { model: MODEL, prompt: "Once" });
      expect(response.status).toBe(503);
      expect(response.headers.get("retry-after")).toBe("1");
      expect(await response.json()).toEqual({ error: { message: "the model is loading; retry shortly", type: "service_unavailable_error", param: null, code: "unavailable" } });
      expect((await fetch(`http://127.0.0.1:${port}/v1/models`)).status).toBe(503);
    } finally {
      await loading.close(100);
    }
  });
});
