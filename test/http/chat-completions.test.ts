import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EngineModel } from "../../src/engine/engine.js";
import { loadChatTestModel } from "../support/chat-test-model.js";
import { postJson, startHttpTestServer, type HttpTestServer } from "../support/http-test-server.js";
import { decodeAll } from "../support/test-server.js";

const MODEL = "chat";
const ASK = [{ role: "user" as const, content: "Tell a story." }];

/** POST /v1/chat/completions (docs/http-api.md) on a model with a chat template, through the official openai client and plain fetch. */
describe("OpenAI chat completions over HTTP", () => {
  const root = mkdtempSync(join(tmpdir(), "kvwarden-http-chat-"));
  let model: EngineModel;
  let sidecar: HttpTestServer;

  beforeAll(async () => {
    model = await loadChatTestModel(root);
    sidecar = await startHttpTestServer(model);
  });
  afterAll(async () => {
    await sidecar?.close();
    await model?.runner.release();
    rmSync(root, { recursive: true, force: true });
  });

  it("answers greedily with the gRPC path's text (Prefill with messages, then Decode)", async () => {
    await sidecar.grpc.prefill({ sequenceId: "grpc-chat", messages: ASK });
    const tokens = await decodeAll(sidecar.grpc, { sequenceId: "grpc-chat", maxNewTokens: 24 });
    await sidecar.grpc.release("grpc-chat");
    const expected = tokens.map((token) => token.text).join("");

    const reply = await sidecar.openai().chat.completions.create({ model: MODEL, messages: ASK, max_completion_tokens: 24, temperature: 0 });
    expect(reply.object).toBe("chat.completion");
    expect(reply.choices).toEqual([{ index: 0, message: { role: "assistant", content: expected, refusal: null }, logprobs: null, finish_reason: "length" }]);
    expect(expected.length).toBeGreaterThan(0);
    expect(reply.usage).toMatchObject({ completion_tokens: 24, prompt_tokens_details: { cached_tokens: 0 } });
    expect(sidecar.engine.sequenceCount).toBe(0);
  });

  it("streams deltas through the openai client: the role first, the same content, then the finish and the usage", async () => {
    const whole = await sidecar.openai().chat.completions.create({ model: MODEL, messages: ASK, max_tokens: 10, temperature: 0 });
    const stream = await sidecar.openai().chat.completions.create({ model: MODEL, messages: ASK, max_tokens: 10, temperature: 0, stream: true, stream_options: { include_usage: true } });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.every((chunk) => chunk.object === "chat.completion.chunk")).toBe(true);
    expect(chunks[0].choices).toEqual([{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }]);
    const content = chunks.flatMap((chunk) => chunk.choices.map((choice) => choice.delta.content ?? "")).join("");
    expect(content).toBe(whole.choices[0].message.content);
    expect(chunks.at(-2)!.choices).toEqual([{ index: 0, delta: {}, logprobs: null, finish_reason: "length" }]);
    expect(chunks.at(-1)!).toMatchObject({ choices: [], usage: whole.usage });
  });

  it("frames chat chunks as OpenAI does (plain HTTP), n choices each with its role, content and finish", async () => {
    const response = await postJson(`${sidecar.baseUrl}/v1/chat/completions`, { model: MODEL, messages: ASK, max_tokens: 2, temperature: 0, n: 2, stream: true });
    const events = (await response.text()).split("\n\n");
    expect(events.at(-1)).toBe("");
    expect(events.at(-2)).toBe("data: [DONE]");
    const chunks = events.slice(0, -2).map((event) => JSON.parse(event.replace(/^data: /, "")));
    for (const index of [0, 1]) {
      const mine = chunks.flatMap((chunk) => chunk.choices).filter((choice) => choice.index === index);
      expect(mine.map((choice) => Object.keys(choice.delta))).toEqual([["role", "content"], ["content"], ["content"], []]);
      expect(mine.map((choice) => choice.finish_reason)).toEqual([null, null, null, "length"]);
    }
  });

  it("continues a conversation in a KV session, reusing the first turn and its reply", async () => {
    const client = sidecar.openai();
    const first = await client.chat.completions.create({ model: MODEL, messages: ASK, max_tokens: 12, temperature: 0, kv_session: "talk" } as never);
    const conversation = [...ASK, { role: "assistant" as const, content: first.choices[0].message.content! }, { role: "user" as const, content: "And then?" }];
    const second = await client.chat.completions.create({ model: MODEL, messages: conversation, max_tokens: 12, temperature: 0 }, { headers: { "X-KV-Session": "talk" } });
    const cached = second.usage!.prompt_tokens_details!.cached_tokens!;
    // At least the first prompt was reused, and at most what the session held (the prompt and 12 generated tokens).
    expect(cached).toBeGreaterThanOrEqual(first.usage!.prompt_tokens);
    expect(cached).toBeLessThanOrEqual(first.usage!.prompt_tokens + 12);
    const fresh = await client.chat.completions.create({ model: MODEL, messages: conversation, max_tokens: 12, temperature: 0 });
    expect(second.choices[0].message.content).toBe(fresh.choices[0].message.content);
    expect(second.usage!.prompt_tokens).toBe(fresh.usage!.prompt_tokens);
    expect((await fetch(`${sidecar.baseUrl}/v1/kv_sessions/talk`, { method: "DELETE" })).status).toBe(200);
    expect(sidecar.engine.sequenceCount).toBe(0);
  });

  it("returns chat logprobs: each token's, with its top alternatives", async () => {
    const reply = await sidecar.openai().chat.completions.create({ model: MODEL, messages: ASK, max_tokens: 4, temperature: 0, logprobs: true, top_logprobs: 3 });
    const content = reply.choices[0].logprobs!.content!;
    expect(content.map((entry) => entry.token).join("")).toBe(reply.choices[0].message.content);
    for (const entry of content) {
      expect(entry.top_logprobs).toHaveLength(3);
      expect(entry.top_logprobs[0]).toEqual({ token: entry.token, logprob: entry.logprob, bytes: entry.bytes });
      expect(Buffer.from(entry.bytes!).toString("utf8")).toBe(entry.token);
    }
  });
});
