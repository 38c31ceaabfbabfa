import { Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { SpanKind, SpanStatusCode } from "@opentelemetry/api";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { DecodeRequest, PrefillRequest, type DecodeResponse, type DeepPartial } from "../../src/gen/kvwarden/v1/kvwarden.js";
import { requestedExporters } from "../../src/telemetry/tracing.js";
import { loadTestModel } from "../support/test-model.js";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { childrenOf, only, recordSpans } from "./support/span-recorder.js";

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID = "00f067aa0ba902b7";
const PROMPT = "Once upon a time, there was a little dog named Max. Max liked to run in the big green park with his friend Sue.";

function withTraceparent(): Metadata {
  const metadata = new Metadata();
  metadata.set("traceparent", `00-${TRACE_ID}-${CALLER_SPAN_ID}-01`);
  return metadata;
}

describe("tracing", () => {
  let recorder: ReturnType<typeof recordSpans>;
  let t: TestServer;

  beforeAll(async () => {
    recorder = recordSpans();
    t = await startTestServer(await loadTestModel(), { prefillChunkTokens: 16 });
  });
  afterAll(async () => {
    await t.close();
    await recorder.stop();
  });
  beforeEach(() => recorder.exporter.reset());

  const prefill = (request: DeepPartial<PrefillRequest> & { sequenceId: string }, metadata = withTraceparent()) => t.client.prefill(request, { metadata });
  const decode = async (request: DeepPartial<DecodeRequest> & { sequenceId: string }, metadata = withTraceparent()) => {
    const messages: DecodeResponse[] = [];
    for await (const message of t.client.decode(request, { metadata })) messages.push(message);
    return messages;
  };

  it("continues the caller's trace with a server span, a span per prefill chunk and one for the eviction", async () => {
    const response = await prefill({ sequenceId: "traced", text: PROMPT, eviction: { policy: "streaming_llm", maxTokens: 12 } });
    const spans = recorder.exporter.getFinishedSpans();
    const server = only(spans, "kvwarden.v1.KvCache/Prefill");
    expect(server.kind).toBe(SpanKind.SERVER);
    expect(server.spanContext().traceId).toBe(TRACE_ID);
    expect(server.parentSpanContext?.spanId).toBe(CALLER_SPAN_ID);
    expect(server.attributes).toMatchObject({
      "rpc.system": "grpc",
      "rpc.service": "kvwarden.v1.KvCache",
      "rpc.method": "Prefill",
      "rpc.grpc.status_code": status.OK,
      "gen_ai.operation.name": "text_completion",
      "gen_ai.request.model": "stories260K",
      "gen_ai.usage.input_tokens": response.promptTokens,
      "kvwarden.sequence.id": "traced",
    });

    const chunks = childrenOf(spans, server).filter((span) => span.name === "kvwarden.prefill_chunk");
    expect(chunks.map((span) => span.attributes["kvwarden.chunk.tokens"])).toEqual(
      Array.from({ length: Math.ceil(response.promptTokens / 16) }, (_, i) => Math.min(16, response.promptTokens - 16 * i)),
    );
    expect(chunks.map((span) => span.attributes["kvwarden.chunk.first_position"])).toEqual(chunks.map((_, i) => 16 * i));

    const evict = only(spans, "kvwarden.evict");
    expect(evict.parentSpanContext?.spanId).toBe(server.spanContext().spanId);
    const result = response.eviction!;
    expect(evict.attributes).toMatchObject({
      "kvwarden.sequence.id": "traced",
      "kvwarden.eviction.policy": "streaming_llm",
      "kvwarden.eviction.applied": true,
      "kvwarden.eviction.budget_tokens": 12,
      "kvwarden.eviction.entries_before": Number(result.entriesBefore),
      "kvwarden.eviction.entries_after": Number(result.entriesAfter),
      "kvwarden.eviction.bytes_before": Number(result.bytesBefore),
      "kvwarden.eviction.bytes_after": Number(result.bytesAfter),
      "kvwarden.eviction.entry_bytes_before": Number(result.entryBytesBefore),
      "kvwarden.eviction.entry_bytes_after": Number(result.entryBytesAfter),
      "kvwarden.eviction.lazy_layers": [],
    });
    // Recorded, so measured: the same share in the span and the response.
    const share = evict.attributes["kvwarden.eviction.evicted_attention_share"] as number;
    expect(share).toBeGreaterThan(0);
    expect(share).toBeLessThan(1);
    expect(result.evictedAttentionShare).toBe(share);
  });

  it("gives Decode one text_completion span with GenAI attributes, an event per token and the decode budget's evictions as children", async () => {
    await prefill({ sequenceId: "decoded", text: PROMPT });
    recorder.exporter.reset();
    const eviction = { policy: "streaming_llm", maxTokens: 20, decodeSlack: 2 };
    const tokens = await decode({ sequenceId: "decoded", maxNewTokens: 9, ignoreEos: true, sampling: { temperature: 0.5, topK: 20, seed: 7 }, eviction });
    expect(tokens).toHaveLength(9);
    const spans = recorder.exporter.getFinishedSpans();
    const server = only(spans, "kvwarden.v1.KvCache/Decode");
    expect(server.attributes).toMatchObject({ "gen_ai.usage.output_tokens": 9, "gen_ai.request.max_tokens": 9, "rpc.grpc.status_code": status.OK });
    const generation = only(spans, "text_completion stories260K");
    expect(generation.parentSpanContext?.spanId).toBe(server.spanContext().spanId);
    expect(generation.attributes).toMatchObject({
      "gen_ai.operation.name": "text_completion",
      "gen_ai.request.model": "stories260K",
      "gen_ai.request.max_tokens": 9,
      "gen_ai.request.temperature": 0.5,
      "gen_ai.request.top_k": 20,
      "gen_ai.request.seed": 7,
      "gen_ai.usage.output_tokens": 9,
      "gen_ai.response.finish_reasons": ["length"],
    });
    expect(generation.attributes["gen_ai.response.time_to_first_chunk"]).toBeGreaterThan(0);
    expect(generation.events.map((event) => event.attributes?.["kvwarden.position"])).toEqual(tokens.map((token) => token.position));
    const evictions = childrenOf(spans, generation).filter((span) => span.name === "kvwarden.evict");
    expect(evictions.length).toBe(tokens.filter((token) => token.eviction).length);
    expect(evictions.length).toBeGreaterThan(0);
    for (const span of evictions) expect(span.attributes["kvwarden.eviction.entries_after"]).toBeLessThan(span.attributes["kvwarden.eviction.entries_before"] as number);
    // Decode steps are summarized, not spanned.
    expect(spans.filter((span) => span.name === "kvwarden.prefill_chunk")).toEqual([]);
  });

  it("records the status of failed calls; only server faults mark the span as an error", async () => {
    const failure = await decode({ sequenceId: "missing", maxNewTokens: 1 }).catch((error: ServiceError) => error);
    expect((failure as ServiceError).code).toBe(status.NOT_FOUND);
    const span = only(recorder.exporter.getFinishedSpans(), "kvwarden.v1.KvCache/Decode");
    expect(span.attributes["rpc.grpc.status_code"]).toBe(status.NOT_FOUND);
    expect(span.status.code).toBe(SpanStatusCode.UNSET);
  });

  it("starts a new trace when the caller sends none", async () => {
    await t.client.evict({ sequenceId: "traced", eviction: { policy: "streaming_llm", maxTokens: 8 } });
    const server = only(recorder.exporter.getFinishedSpans(), "kvwarden.v1.KvCache/Evict");
    expect(server.parentSpanContext).toBeUndefined();
    expect(server.spanContext().traceId).not.toBe(TRACE_ID);
  });
});

describe("requestedExporters (off unless configured)", () => {
  it("reads the standard variables", () => {
    expect(requestedExporters({})).toEqual([]);
    expect(requestedExporters({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://jaeger:4317" })).toEqual(["otlp"]);
    expect(requestedExporters({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://jaeger:4318/v1/traces" })).toEqual(["otlp"]);
    expect(requestedExporters({ OTEL_TRACES_EXPORTER: "console, otlp" })).toEqual(["console", "otlp"]);
    expect(requestedExporters({ OTEL_TRACES_EXPORTER: "none", OTEL_EXPORTER_OTLP_ENDPOINT: "http://jaeger:4317" })).toEqual([]);
    expect(requestedExporters({ OTEL_SDK_DISABLED: "true", OTEL_EXPORTER_OTLP_ENDPOINT: "http://jaeger:4317" })).toEqual([]);
  });
});
