import { status, type ServiceError } from "@grpc/grpc-js";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { Engine, type EngineModel } from "../../src/engine/engine.js";
import { KvwardenClient } from "../../src/client/index.js";
import { KvwardenServer } from "../../src/sidecar/kvwarden-server.js";
import { KvwardenMetrics } from "../../src/telemetry/metrics.js";
import { MetricsServer } from "../../src/telemetry/metrics-server.js";
import { expectExactAccounting } from "../fuzz/support/accounting.js";
import { loadTestModel } from "../support/test-model.js";
import { DEFAULT_TEST_OPTIONS, startTestServer, statusOf, type TestServer } from "../support/test-server.js";

const PROMPT = Array.from({ length: 100 }, (_, i) => 5 + i);

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

describe("the admission queue over gRPC (--max-queue)", () => {
  let model: EngineModel;
  /** What one PROMPT sequence holds. */
  let one: number;
  let t: TestServer | undefined;
  beforeAll(async () => {
    model = await loadTestModel();
    const probe = await startTestServer(model);
    one = Number((await probe.client.prefill({ sequenceId: "a", tokenIds: PROMPT })).kvBytes);
    await probe.close();
  });
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  /** A server whose budget holds one PROMPT sequence and a half, with `a` in it: a second sequence must wait. */
  const serverWithA = async (maxQueue: number) => {
    t = await startTestServer(model, { kvBudgetBytes: Math.floor(one * 1.5), maxQueue });
    await t.client.prefill({ sequenceId: "a", tokenIds: PROMPT });
    return t;
  };
  const prefill = (server: TestServer, sequenceId: string, deadline?: Date) => server.client.prefill({ sequenceId, tokenIds: PROMPT }, { deadline });
  const queued = (server: TestServer, n: number) => vi.waitFor(() => expect(server.engine.requestsWaiting).toBe(n), { timeout: 10_000, interval: 5 });

  it("holds a Prefill that does not fit until the sequence holding the memory is released, then admits it", async () => {
    const server = await serverWithA(4);
    const second = prefill(server, "b");
    await queued(server, 1);
    const released = await server.client.release("a");
    expect(released.found).toBe(true);
    const admitted = await second;
    expect(admitted.promptTokens).toBe(PROMPT.length);
    expect(Number(admitted.kvBytes)).toBe(one);
    expect(server.engine.requestsWaiting).toBe(0);
    const stats = await server.client.stats();
    expect(stats.sequences.map((s) => s.sequenceId)).toEqual(["b"]);
    await expectExactAccounting(server.client);
  });

  it("holds a Fork that does not fit the same way, its source claimed meanwhile", async () => {
    t = await startTestServer(model, { kvBudgetBytes: Math.floor(one * 2.2), maxQueue: 4 });
    const server = t;
    await server.client.prefill({ sequenceId: "a", tokenIds: PROMPT });
    await server.client.prefill({ sequenceId: "filler", tokenIds: PROMPT.slice(0, 60) });
    const fork = server.client.fork("a", "a-copy");
    await queued(server, 1);
    // Releasing the source now would pull the copy's source away: it is busy until the fork ends.
    expect((await statusOf(server.client.release("a"))).code).toBe(status.ABORTED);
    await server.client.release("filler");
    expect(Number((await fork).kvBytes)).toBe(one);
    const stats = await server.client.stats();
    expect(stats.sequences.map((s) => s.sequenceId).sort()).toEqual(["a", "a-copy"]);
    await expectExactAccounting(server.client);
  });

  it("answers DEADLINE_EXCEEDED to a queued call whose deadline passes, leaving nothing behind", async () => {
    const server = await serverWithA(4);
    const error = (await prefill(server, "b", new Date(Date.now() + 300)).catch((e: unknown) => e)) as ServiceError;
    expect(error.code).toBe(status.DEADLINE_EXCEEDED);
    await queued(server, 0);
    const stats = await server.client.stats();
    expect(stats.sequences.map((s) => s.sequenceId)).toEqual(["a"]);
    expect(Number(stats.kvBytesUsed)).toBe(one);
    // The queue is empty again: a call that fits is admitted at once.
    await server.client.release("a");
    expect((await prefill(server, "b")).promptTokens).toBe(PROMPT.length);
  });

  it("refuses with RESOURCE_EXHAUSTED, naming the queue, when the queue is full", async () => {
    const server = await serverWithA(1);
    const waiting = prefill(server, "b");
    await queued(server, 1);
    const refused = await statusOf(prefill(server, "c"));
    expect(refused.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(refused.details).toMatch(/^KV budget exhausted: .*, and the admission queue is full \(1 calls already wait for KV memory, --max-queue\)$/);
    // The refused call left nothing; "b" is there, empty and claimed, while it waits.
    expect((await server.client.stats()).sequences.map((s) => [s.sequenceId, Number(s.kvBytes)])).toEqual([
      ["a", one],
      ["b", 0],
    ]);
    await server.client.release("a");
    expect((await waiting).sequenceId).toBe("b");
  });

  it("refuses at once, as before, with --max-queue 0, and what could never fit whatever the queue", async () => {
    const server = await serverWithA(0);
    const refused = await statusOf(prefill(server, "b"));
    expect(refused.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(refused.details).toMatch(/^KV budget exhausted: \d+ bytes requested/);
    await t!.close();
    const queueing = await serverWithA(4);
    const huge = Array.from({ length: 400 }, (_, i) => 5 + (i % 400));
    const tooBig = await statusOf(queueing.client.prefill({ sequenceId: "huge", tokenIds: huge }));
    expect(tooBig.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(queueing.engine.requestsWaiting).toBe(0);
  });

  it("shows a queued call as num_requests_waiting 1 and not as running on /metrics, beside the cache configuration", async () => {
    const budget = Math.floor(one * 1.5);
    const engine = new Engine(model, { ...DEFAULT_TEST_OPTIONS, kvBudgetBytes: budget, maxQueue: 4 });
    const metrics = new KvwardenMetrics(() => ({ ...engine.stats(), sequenceCount: engine.sequenceCount, requestsWaiting: engine.requestsWaiting, cacheConfig: engine.cacheConfig }));
    const server = new KvwardenServer(engine, { executionProvider: "cpu", version: "test" }, { metrics });
    const client = new KvwardenClient(`127.0.0.1:${await server.listen("127.0.0.1:0")}`);
    const endpoint = new MetricsServer(metrics.registry);
    const url = `http://127.0.0.1:${await endpoint.listen("127.0.0.1:0")}/metrics`;
    try {
      const scrape = async () => parseExposition(await (await fetch(url)).text());
      await client.prefill({ sequenceId: "a", tokenIds: PROMPT });
      const second = client.prefill({ sequenceId: "b", tokenIds: PROMPT });
      await vi.waitFor(() => expect(engine.requestsWaiting).toBe(1), { timeout: 10_000, interval: 5 });
      const during = await scrape();
      expect(during.get("kvwarden:num_requests_waiting")).toBe(1);
      expect(during.get("kvwarden:num_requests_running")).toBe(0);
      expect(during.get("kvwarden:kv_cache_usage_perc")).toBeCloseTo(one / budget, 9);
      const { layers, kvHeads, headSize } = model.config;
      const blockBytes = layers * kvHeads * 16 * (2 * headSize + 3) * 4; // 16 entries of float32 key, value, mask, mass, position
      expect(during.get(`kvwarden:cache_config_info{block_size="16",num_gpu_blocks="${Math.floor(budget / blockBytes)}",kv_budget_bytes="${budget}",kv_dtype="float32"}`)).toBe(1);
      await client.release("a");
      await second;
      const after = await scrape();
      expect(after.get("kvwarden:num_requests_waiting")).toBe(0);
      expect(after.get("kvwarden:num_requests_running")).toBe(0);
      expect(after.get("kvwarden:kv_cache_usage_perc")).toBeCloseTo(one / budget, 9);
    } finally {
      client.close();
      await Promise.all([server.close(1_000), endpoint.close()]);
    }
  });
});
