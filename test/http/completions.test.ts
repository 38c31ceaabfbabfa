import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { EngineModel } from "../../src/engine/engine.js";
import { loadTestModel } from "../support/test-model.js";
import { decodeAll } from "../support/test-server.js";
import { postJson, startHttpTestServer, type HttpTestServer } from "../support/http-test-server.js";

const MODEL = "stories260K";
const PROMPT = "Once upon a time";

/**
 * POST /v1/completions (docs/http-api.md) against a real server, with the
 * official openai client and with plain fetch: greedy output equals the gRPC
 * path's, streams are framed as OpenAI frames them, KV sessions reuse their
 * tokens, n choices come from one prefill, and nothing is left behind.
 */
describe("OpenAI completions over HTTP", () => {
  let model: EngineModel;
  let sidecar: HttpTestServer;

  beforeAll(async () => {
    model = await loadTestModel();
    sidecar = await startHttpTestServer(model);
  });
  afterAll(async () => {
    await sidecar?.close();
    await model?.runner.release();
  });

  /** What gRPC's Prefill + greedy Decode generate for `text`. */
  async function grpcGreedy(sequenceId: string, text: string, maxNewTokens: number): Promise<string> {
    await sidecar.grpc.prefill({ sequenceId, text });
    const tokens = await decodeAll(sidecar.grpc, { sequenceId, maxNewTokens });
    await sidecar.grpc.release(sequenceId);
    return tokens.map((token) => token.text).join("");
  }

  it("answers greedily with the gRPC path's text and usage, and releases its sequence", async () => {
    const expected = await grpcGreedy("grpc-greedy", PROMPT, 20);
    const reply = await sidecar.openai().completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 20, temperature: 0 });
    expect(reply.object).toBe("text_completion");
    expect(reply.model).toBe(MODEL);
    expect(reply.choices).toEqual([{ index: 0, text: expected, logprobs: null, finish_reason: "length" }]);
    // BOS and the prompt's 4 tokens.
    expect(reply.usage).toEqual({ prompt_tokens: 5, completion_tokens: 20, total_tokens: 25, prompt_tokens_details: { cached_tokens: 0 } });
    expect(expected.startsWith(", there was a little girl")).toBe(true);
    expect(sidecar.engine.sequenceCount).toBe(0);
  });

  it("streams the same text through the openai client, with a final usage chunk", async () => {
    const whole = await sidecar.openai().completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 12, temperature: 0 });
    const stream = await sidecar.openai().completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true } });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    const usageChunk = chunks.at(-1)!;
    expect(usageChunk.choices).toEqual([]);
    expect(usageChunk.usage).toEqual(whole.usage);
    const textChunks = chunks.slice(0, -1);
    expect(textChunks.every((chunk) => chunk.usage === null && chunk.id === usageChunk.id)).toBe(true);
    expect(textChunks.map((chunk) => chunk.choices[0].text).join("")).toBe(whole.choices[0].text);
    expect(textChunks.at(-1)!.choices[0].finish_reason).toBe("length");
    expect(textChunks.slice(0, -1).every((chunk) => chunk.choices[0].finish_reason === null)).toBe(true);
  });

  it("frames server-sent events exactly as OpenAI does (plain HTTP)", async () => {
    const response = await postJson(`${sidecar.baseUrl}/v1/completions`, { model: MODEL, prompt: PROMPT, max_tokens: 3, temperature: 0, stream: true });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    const body = await response.text();
    expect(body.endsWith("data: [DONE]\n\n")).toBe(true);
    const events = body.split("\n\n").slice(0, -1);
    expect(events.every((event) => event.startsWith("data: ") && !event.includes("\n"))).toBe(true);
    const chunks = events.slice(0, -1).map((event) => JSON.parse(event.slice("data: ".length)));
    // Without include_usage, chunks carry no usage field at all.
    expect(chunks.map((chunk) => [chunk.object, chunk.choices[0].text, chunk.choices[0].finish_reason, "usage" in chunk])).toEqual([
      ["text_completion", ",", null, false],
      ["text_completion", " there", null, false],
      ["text_completion", " was", "length", false],
    ]);
  });

  it("continues a KV session: the second turn feeds only what extends it and reports the reused tokens", async () => {
    const client = sidecar.openai();
    const first = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 8, temperature: 0, kv_session: "story" } as never);
    expect(first.usage!.prompt_tokens_details!.cached_tokens).toBe(0);
    const secondPrompt = PROMPT + first.choices[0].text + " and";
    // The header names the session as well as the body field does.
    const second = await client.completions.create({ model: MODEL, prompt: secondPrompt, max_tokens: 8, temperature: 0 }, { headers: { "X-KV-Session": "story" } });
    // The session held the first prompt and its 8 generated tokens, all of which the second prompt repeats.
    expect(second.usage!.prompt_tokens_details!.cached_tokens).toBe(first.usage!.prompt_tokens + 8);
    expect(second.usage!.prompt_tokens).toBe(first.usage!.prompt_tokens + 8 + 1);
    const fresh = await client.completions.create({ model: MODEL, prompt: secondPrompt, max_tokens: 8, temperature: 0 });
    expect(second.choices[0].text).toBe(fresh.choices[0].text);
    expect(sidecar.engine.sequenceCount).toBe(1);

    // A prompt that rewrites what the session was prompted with is refused, and the session stays as it was.
    const conflict = await client.completions.create({ model: MODEL, prompt: "Twice upon a time", max_tokens: 4, kv_session: "story" } as never).catch((error: unknown) => error);
    expect(conflict).toMatchObject({ status: 409, type: "conflict_error", param: "kv_session", code: "session_mismatch" });
    const third = await client.completions.create({ model: MODEL, prompt: secondPrompt + second.choices[0].text, max_tokens: 4, temperature: 0, kv_session: "story" } as never);
    // The prompt is exactly what the session holds: its last token is fed again, so that the reply comes from fresh logits.
    expect(third.usage!.prompt_tokens).toBe(second.usage!.prompt_tokens + 8);
    expect(third.usage!.prompt_tokens_details!.cached_tokens).toBe(third.usage!.prompt_tokens - 1);

    const deleted = await fetch(`${sidecar.baseUrl}/v1/kv_sessions/story`, { method: "DELETE" });
    expect(await deleted.json()).toEqual({ id: "story", object: "kv_session", deleted: true });
    expect(sidecar.engine.sequenceCount).toBe(0);
    const again = await fetch(`${sidecar.baseUrl}/v1/kv_sessions/story`, { method: "DELETE" });
    expect(again.status).toBe(404);
    expect(await again.json()).toMatchObject({ error: { type: "invalid_request_error", param: "kv_session", code: "session_not_found" } });
  });

  it("applies kv_eviction (an EvictionSpec in JSON) to the prompt and reports what it evicted", async () => {
    const prompt = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends and her dog.";
    const reply = (await sidecar.openai().completions.create({ model: MODEL, prompt, max_tokens: 4, temperature: 0, kv_eviction: { policy: "h2o", max_tokens: 16 } } as never)) as unknown as {
      usage: { prompt_tokens: number };
      kv_eviction: { policy: string; budgetTokens: number; entriesBefore: string; entriesAfter: string };
    };
    const { layers, kvHeads } = model.config;
    expect(reply.kv_eviction.policy).toBe("h2o");
    expect(reply.kv_eviction.budgetTokens).toBe(16);
    expect(Number(reply.kv_eviction.entriesBefore)).toBe(reply.usage.prompt_tokens * layers * kvHeads);
    expect(Number(reply.kv_eviction.entriesAfter)).toBe(16 * layers * kvHeads);

    const refused = await sidecar.openai().completions.create({ model: MODEL, prompt, max_tokens: 4, kv_eviction: { policy: "no-such-policy", max_tokens: 16 } } as never).catch((error: unknown) => error);
    expect(refused).toMatchObject({ status: 400, type: "invalid_request_error" });
    expect((refused as Error).message).toContain("no-such-policy");
    expect(sidecar.engine.sequenceCount).toBe(0);
  });

  it("gives n continuations of one prefill: greedy ones agree, seeded ones repeat", async () => {
    const client = sidecar.openai();
    const greedy = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 10, temperature: 0, n: 2 });
    expect(greedy.choices.map((choice) => choice.index)).toEqual([0, 1]);
    expect(greedy.choices[1].text).toBe(greedy.choices[0].text);
    // One prefill: the prompt is counted once, the completions of both choices together.
    expect(greedy.usage).toMatchObject({ prompt_tokens: 5, completion_tokens: 20 });
    const sampled = () => client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 10, temperature: 1, seed: 7, n: 2 });
    const [a, b] = [await sampled(), await sampled()];
    expect(b.choices.map((choice) => choice.text)).toEqual(a.choices.map((choice) => choice.text));
    expect(sidecar.engine.sequenceCount).toBe(0);
  });

  it("ends at a stop string, which is not part of the text", async () => {
    const reply = await sidecar.openai().completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 20, temperature: 0, stop: [" girl", "zzz"] });
    expect(reply.choices[0]).toMatchObject({ text: ", there was a little", finish_reason: "stop" });
    const stream = await sidecar.openai().completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 20, temperature: 0, stop: " girl", stream: true });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0].text;
    expect(text).toBe(", there was a little");
  });

  it("scores generated tokens when asked (logprobs): the chosen greedy token is the top alternative", async () => {
    const reply = await sidecar.openai().completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 5, temperature: 0, logprobs: 2 });
    const logprobs = reply.choices[0].logprobs!;
    expect(logprobs.tokens!.join("")).toBe(reply.choices[0].text);
    logprobs.tokens!.forEach((token, i) => {
      const top = Object.entries(logprobs.top_logprobs![i]);
      expect(top).toHaveLength(2);
      expect(top[0]).toEqual([token, logprobs.token_logprobs![i]]);
      expect(top[0][1]).toBeGreaterThan(top[1][1]);
      expect(logprobs.token_logprobs![i]).toBeLessThan(0);
    });
    const offsets = logprobs.tokens!.map((_, i) => logprobs.tokens!.slice(0, i).join("").length);
    expect(logprobs.text_offset).toEqual(offsets);
    // Streamed, each chunk's offsets continue from the choice's start.
    const stream = await sidecar.openai().completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 5, temperature: 0, logprobs: 2, stream: true });
    const streamed: number[] = [];
    for await (const chunk of stream) streamed.push(...chunk.choices[0].logprobs!.text_offset!);
    expect(streamed).toEqual(offsets);
    expect(sidecar.engine.sequenceCount).toBe(0);
  });

  it("answers a refusal that comes with the first token as an HTTP status, even when streaming", async () => {
    // A prompt of token ids that fills the model's whole context: the prefill succeeds, the first decode step cannot.
    const prompt = [1, ...Array.from({ length: model.config.contextLength - 1 }, () => 403)];
    const response = await postJson(`${sidecar.baseUrl}/v1/completions`, { model: MODEL, prompt, max_tokens: 5, stream: true });
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({
      error: { message: expect.stringMatching(/^sequence 'openai-[0-9a-f-]{36}' is at position 512, the model's trained context$/), type: "invalid_request_error", param: null, code: "out_of_range" },
    });
    expect(sidecar.engine.sequenceCount).toBe(0);
  });

  it("releases the sequences of a stream whose client goes away", async () => {
    const controller = new AbortController();
    const response = await postJson(`${sidecar.baseUrl}/v1/completions`, { model: MODEL, prompt: PROMPT, max_tokens: 400, temperature: 0, n: 2, stream: true }, {}, controller.signal);
    const reader = response.body!.getReader();
    await reader.read();
    expect(sidecar.engine.sequenceCount).toBe(2);
    controller.abort();
    await vi.waitFor(() => expect(sidecar.engine.sequenceCount).toBe(0), { timeout: 10_000 });
  });
});
