import { loadPackageDefinition, Metadata, Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall, type ServiceDefinition } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTracing, type Tracing } from "../../src/telemetry/tracing.js";
import { loadTestModel } from "../support/test-model.js";
import { startTestServer } from "../support/test-server.js";

/** OTLP messages as proto-loader decodes them (camelCase, bytes as Buffers, oneof case in `value`). */
interface AnyValue {
  value?: "stringValue" | "boolValue" | "intValue" | "doubleValue" | "arrayValue";
  stringValue?: string;
  boolValue?: boolean;
  intValue?: number;
  doubleValue?: number;
  arrayValue?: { values: AnyValue[] };
}
interface KeyValue {
  key: string;
  value: AnyValue;
}
interface OtlpSpan {
  traceId: Buffer;
  spanId: Buffer;
  parentSpanId: Buffer;
  name: string;
  kind: number;
  attributes: KeyValue[];
  events: { name: string }[];
}
interface ExportRequest {
  resourceSpans: { resource: { attributes: KeyValue[] }; scopeSpans: { scope: { name: string }; spans: OtlpSpan[] }[] }[];
}

const plain = (value: AnyValue): unknown => (value.value === "arrayValue" ? value.arrayValue!.values.map(plain) : value.value ? value[value.value] : undefined);
const attributesOf = (list: KeyValue[]) => Object.fromEntries(list.map(({ key, value }) => [key, plain(value)]));

/** A loopback OTLP/gRPC collector that keeps what it receives. */
async function startReceiver(): Promise<{ port: number; received: ExportRequest[]; stop(): void }> {
  const definition = loadSync(fileURLToPath(new URL("./fixtures/otlp-trace.proto", import.meta.url)), { longs: Number, defaults: true, oneofs: true });
  const otlp = loadPackageDefinition(definition) as unknown as {
    opentelemetry: { proto: { collector: { trace: { v1: { TraceService: { service: ServiceDefinition } } } } } };
  };
  const received: ExportRequest[] = [];
  const server = new Server();
  server.addService(otlp.opentelemetry.proto.collector.trace.v1.TraceService.service, {
    Export(call: ServerUnaryCall<ExportRequest, object>, callback: sendUnaryData<object>) {
      received.push(call.request);
      callback(null, {});
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  return { port, received, stop: () => server.forceShutdown() };
}

describe("OTLP export", () => {
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let tracing: Tracing | undefined;

  beforeAll(async () => {
    receiver = await startReceiver();
    // Configured the way a deployment configures it: standard variables only.
    Object.assign(process.env, {
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${receiver.port}`,
      OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
      OTEL_SERVICE_NAME: "kvwarden-under-test",
    });
    tracing = await startTracing("9.9.9");
  });
  afterAll(() => receiver.stop());

  it("sends the server, prefill-chunk, eviction and decode spans to an OTLP/gRPC collector", async () => {
    expect(tracing).toBeDefined();
    const t = await startTestServer(await loadTestModel());
    const metadata = new Metadata();
    metadata.set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    await t.client.prefill({ sequenceId: "exported", text: "Once upon a time, there was a cat.", eviction: { policy: "snapkv", maxTokens: 8, window: 2 } }, { metadata });
    for await (const _ of t.client.decode({ sequenceId: "exported", maxNewTokens: 3, ignoreEos: true }, { metadata }));
    await t.close();
    await tracing!.shutdown(); // flushes the batch

    const resources = receiver.received.flatMap((request) => request.resourceSpans);
    expect(attributesOf(resources[0].resource.attributes)).toMatchObject({ "service.name": "kvwarden-under-test", "service.version": "9.9.9" });
    const spans = resources.flatMap((resource) => resource.scopeSpans.flatMap((scope) => scope.spans));
    const byName = (name: string) => spans.filter((span) => span.name === name);
    const hex = (bytes: Buffer) => bytes.toString("hex");

    const [prefill] = byName("kvwarden.v1.KvCache/Prefill");
    expect(hex(prefill.traceId)).toBe("0af7651916cd43dd8448eb211c80319c");
    expect(hex(prefill.parentSpanId)).toBe("b7ad6b7169203331");
    expect(prefill.kind).toBe(2); // SPAN_KIND_SERVER
    expect(attributesOf(prefill.attributes)).toMatchObject({ "rpc.system": "grpc", "rpc.method": "Prefill", "gen_ai.request.model": "stories260K" });

    const [evict] = byName("kvwarden.evict");
    expect(hex(evict.parentSpanId)).toBe(hex(prefill.spanId));
    const eviction = attributesOf(evict.attributes);
    expect(eviction).toMatchObject({ "kvwarden.eviction.policy": "snapkv", "kvwarden.eviction.budget_tokens": 8, "kvwarden.eviction.applied": true });
    expect(eviction["kvwarden.eviction.evicted_attention_share"]).toBeGreaterThan(0);
    expect(byName("kvwarden.prefill_chunk").map((span) => hex(span.parentSpanId))).toEqual([hex(prefill.spanId)]);

    const [generation] = byName("text_completion stories260K");
    expect(attributesOf(generation.attributes)).toMatchObject({ "gen_ai.usage.output_tokens": 3 });
    expect(generation.events.map((event) => event.name)).toEqual(["gen_ai.token", "gen_ai.token", "gen_ai.token"]);
    expect(hex(generation.traceId)).toBe("0af7651916cd43dd8448eb211c80319c");
  });
});
