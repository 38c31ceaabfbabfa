import { SpanKind } from "@opentelemetry/api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EngineModel } from "../../src/engine/engine.js";
import { KvwardenMetrics } from "../../src/telemetry/metrics.js";
import { loadTestModel } from "../support/test-model.js";
import { postJson, startHttpTestServer, type HttpTestServer } from "../support/http-test-server.js";
import { childrenOf, only, recordSpans } from "../telemetry/support/span-recorder.js";

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID = "00f067aa0ba902b7";

/** An HTTP request is traced and counted as a gRPC call is (docs/http-api.md, Telemetry). */
describe("HTTP API telemetry", () => {
  let recorder: ReturnType<typeof recordSpans>;
  let model: EngineModel;
  let sidecar: HttpTestServer;
  let metrics: KvwardenMetrics;

  beforeAll(async () => {
    recorder = recordSpans();
    model = await loadTestModel();
    metrics = new KvwardenMetrics(() => undefined);
    sidecar = await startHttpTestServer(model, {}, { metrics });
  });
  afterAll(async () => {
    await sidecar?.close();
    await model?.runner.release();
    await recorder.stop();
  });

  it("continues the caller's trace with a server span, a decode span per choice, and the same counters", async () => {
    const response = await postJson(
      `${sidecar.baseUrl}/v1/completions`,
      { model: "stories260K", prompt: "Once upon a time", max_tokens: 3, temperature: 0, n: 2, user: "user-7" },
      { traceparent: `00-${TRACE_ID}-${CALLER_SPAN_ID}-01` },
    );
    expect(response.status).toBe(200);
    const spans = recorder.exporter.getFinishedSpans();
    const server = only(spans, "openai.v1/CreateCompletion");
    expect(server.kind).toBe(SpanKind.SERVER);
    expect(server.spanContext().traceId).toBe(TRACE_ID);
    expect(server.parentSpanContext?.spanId).toBe(CALLER_SPAN_ID);
    expect(server.attributes).toMatchObject({
      "rpc.service": "openai.v1",
      "rpc.method": "CreateCompletion",
      "gen_ai.operation.name": "text_completion",
      "gen_ai.request.model": "stories260K",
      "gen_ai.usage.input_tokens": 5,
      "gen_ai.usage.output_tokens": 6,
      "user.id": "user-7",
    });
    const decodes = childrenOf(spans, server).filter((span) => span.name === "text_completion stories260K");
    expect(decodes.map((span) => span.attributes["gen_ai.usage.output_tokens"])).toEqual([3, 3]);

    const text = await metrics.registry.metrics();
    expect(text).toContain('kvwarden:requests_total{method="CreateCompletion",code="OK"} 1');
    expect(text).toContain("kvwarden:prompt_tokens_total 5");
    expect(text).toContain("kvwarden:generation_tokens_total 6");
  });
});
