import { Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KvwardenClient } from "../../src/client/index.js";
import { Engine } from "../../src/engine/engine.js";
import { KvwardenServer } from "../../src/sidecar/kvwarden-server.js";
import { EngineTelemetry } from "../../src/telemetry/engine-telemetry.js";
import { KvwardenMetrics } from "../../src/telemetry/metrics.js";
import { MetricsServer } from "../../src/telemetry/metrics-server.js";
import { loadTestModel } from "../support/test-model.js";
import { DEFAULT_TEST_OPTIONS } from "../support/test-server.js";
import { recordSpans } from "./support/span-recorder.js";

/** Samples of a Prometheus text exposition, keyed by name and labels as written. */
function parseExposition(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

describe("the Prometheus endpoint", () => {
  let engine: Engine;
  let server: KvwardenServer;
  let metrics: KvwardenMetrics;
  let endpoint: MetricsServer;
  let client: KvwardenClient;
  let url: string;
  let recorder: ReturnType<typeof recordSpans>;

  beforeAll(async () => {
    recorder = recordSpans();
    // Room for two short sequences; a 500-token prompt is refused.
    metrics = new KvwardenMetrics(() => engine.stats());
    engine = new Engine(await loadTestModel(), { ...DEFAULT_TEST_OPTIONS, kvBudgetBytes: 600_000, telemetry: new EngineTelemetry(metrics) });
    server = new KvwardenServer(engine, { executionProvider: "cpu", version: "test" }, { metrics });
    const port = await server.listen("127.0.0.1:0");
    client = new KvwardenClient(`127.0.0.1:${port}`);
    endpoint = new MetricsServer(metrics.registry);
    url = `http://127.0.0.1:${await endpoint.listen("127.0.0.1:0")}`;
  });
  afterAll(async () => {
    client.close();
    await Promise.all([server.close(1_000), endpoint.close()]);
    await recorder.stop();
  });

  /** A caller's trace context, sampled or not: the attention share is measured in sampled traces only. */
  const traced = (sampled: boolean) => {
    const metadata = new Metadata();
    metadata.set("traceparent", `00-6e0c63257de34c926f9efcd03899a6a0-30d9af9fa5ab0d35-0${sampled ? 1 : 0}`);
    return metadata;
  };

  it("reports cache use, calls, tokens, evictions, refusals and step latencies", async () => {
    const first = await client.prefill({ sequenceId: "a", text: "Once upon a time, there was a little girl named Lily." });
    const story = "Lily liked to play in the park with her red ball.";
    const evicted = await client.prefill({ sequenceId: "b", text: story, eviction: { policy: "snapkv", maxTokens: 6, window: 2 } }, { metadata: traced(true) });
    const unsampled = await client.prefill({ sequenceId: "b2", text: story, eviction: { policy: "snapkv", maxTokens: 6, window: 2 } }, { metadata: traced(false) });
    await client.release("b2");
    let generated = 0;
    for await (const _ of client.decode({ sequenceId: "a", maxNewTokens: 5, ignoreEos: true })) generated++;
    const refused = await client.prefill({ sequenceId: "c", tokenIds: Array.from({ length: 500 }, (_, i) => 10 + (i % 400)) }).catch((error: ServiceError) => error);
    expect((refused as ServiceError).code).toBe(status.RESOURCE_EXHAUSTED);

    const response = await fetch(`${url}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toContain("text/plain");
    const samples = parseExposition(await response.text());
    const stats = engine.stats();

    expect(samples.get("kvwarden:kv_cache_used_bytes")).toBe(stats.kvBytesUsed);
    expect(samples.get("kvwarden:kv_cache_budget_bytes")).toBe(600_000);
    expect(samples.get("kvwarden:kv_cache_usage_perc")).toBeCloseTo(stats.kvBytesUsed / 600_000, 9);
    expect(samples.get("kvwarden:num_sequences")).toBe(2);
    expect(samples.get("kvwarden:num_requests_running")).toBe(0);
    expect(samples.get("kvwarden:num_requests_waiting")).toBe(0);
    expect(samples.get('kvwarden:requests_total{method="Prefill",code="OK"}')).toBe(3);
    expect(samples.get('kvwarden:requests_total{method="Prefill",code="RESOURCE_EXHAUSTED"}')).toBe(1);
    expect(samples.get('kvwarden:requests_total{method="Decode",code="OK"}')).toBe(1);
    expect(samples.get('kvwarden:resource_exhausted_total{method="Prefill"}')).toBe(1);
    expect(samples.get("kvwarden:prompt_tokens_total")).toBe(first.promptTokens + evicted.promptTokens + unsampled.promptTokens);
    expect(samples.get("kvwarden:generation_tokens_total")).toBe(generated);
    const dropped = Number(evicted.eviction!.entriesBefore - evicted.eviction!.entriesAfter);
    expect(samples.get('kvwarden:evictions_total{policy="snapkv"}')).toBe(2);
    expect(samples.get('kvwarden:evicted_entries_total{policy="snapkv"}')).toBe(2 * dropped);
    // Not twice one: the sampled call's ring held the 16 rows that measure the share until the eviction trimmed it (docs/policies.md).
    const freed = (e: typeof evicted.eviction) => Number(e!.bytesBefore - e!.bytesAfter);
    expect(samples.get('kvwarden:evicted_bytes_total{policy="snapkv"}')).toBe(freed(evicted.eviction) + freed(unsampled.eviction));
    expect(samples.get('kvwarden:evicted_entry_bytes_total{policy="snapkv"}')).toBe(2 * Number(evicted.eviction!.entryBytesBefore - evicted.eviction!.entryBytesAfter));
    // The share is measured in the sampled trace only, and lands in its histogram.
    expect(evicted.eviction!.evictedAttentionShare).toBeGreaterThan(0);
    expect(unsampled.eviction!.evictedAttentionShare).toBeUndefined();
    expect(samples.get('kvwarden:evicted_attention_share_count{policy="snapkv"}')).toBe(1);
    // Three prefills of one chunk each (the refused one never ran a step); four decode steps feed the pending tokens.
    expect(samples.get("kvwarden:prefill_chunk_seconds_count")).toBe(3);
    expect(samples.get("kvwarden:decode_step_seconds_count")).toBe(generated - 1);
    expect(samples.get('kvwarden:decode_step_seconds_bucket{le="+Inf"}')).toBe(generated - 1);
    expect(samples.has("process_resident_memory_bytes")).toBe(true);
  });

  it("answers 404 elsewhere", async () => {
    expect((await fetch(`${url}/`)).status).toBe(404);
  });
});
