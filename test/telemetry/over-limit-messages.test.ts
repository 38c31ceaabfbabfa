import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine } from "../../src/engine/engine.js";
import { KvwardenClient, PrefillRequest } from "../../src/client/index.js";
import { KvwardenServer } from "../../src/sidecar/kvwarden-server.js";
import type { LogFields } from "../../src/telemetry/json-log.js";
import { KvwardenMetrics } from "../../src/telemetry/metrics.js";
import { MetricsServer } from "../../src/telemetry/metrics-server.js";
import { loadTestModel, REFERENCE_TEXT } from "../support/test-model.js";
import { DEFAULT_TEST_OPTIONS, statusOf } from "../support/test-server.js";

/** The server's receive limit here: a small one, so that a short text is over it. */
const LIMIT = 4096;
/** Room for a short Prefill of stories260K (it takes 104 KiB of KV), not for the reference story. */
const KV_BUDGET = 128 * 1024;

/**
 * A Prefill over the receive limit is refused by grpc-js before any handler
 * runs; it is logged and counted like every other call, once, and a
 * RESOURCE_EXHAUSTED that a handler answers is still counted once.
 */
describe("a message over the receive limit", () => {
  let engine: Engine;
  let server: KvwardenServer;
  let metrics: KvwardenMetrics;
  let endpoint: MetricsServer;
  let client: KvwardenClient;
  let url: string;
  const logs: LogFields[] = [];

  beforeAll(async () => {
    engine = new Engine(await loadTestModel(), { ...DEFAULT_TEST_OPTIONS, kvBudgetBytes: KV_BUDGET });
    metrics = new KvwardenMetrics(() => engine.stats());
    server = new KvwardenServer(engine, { executionProvider: "cpu", version: "test" }, { metrics, log: (line) => logs.push(line), maxRequestBytes: LIMIT });
    client = new KvwardenClient(`127.0.0.1:${await server.listen("127.0.0.1:0")}`);
    endpoint = new MetricsServer(metrics.registry);
    url = `http://127.0.0.1:${await endpoint.listen("127.0.0.1:0")}`;
  });
  afterAll(async () => {
    client.close();
    await Promise.all([server.close(1_000), endpoint.close()]);
  });

  const prefillCount = async (code: string) => {
    const text = await (await fetch(`${url}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith(`kvwarden:requests_total{method="Prefill",code="${code}"}`));
    return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
  };
  const prefillLines = () => logs.filter((line) => line.msg === "rpc" && line.method === "kvwarden.v1.KvCache/Prefill");
  /** The refusal is recorded once grpc-js has closed the stream, which may be after the client hears it: waits up to 5 s for `lines`. */
  const recorded = async (lines: number) => {
    for (let waited = 0; prefillLines().length < lines && waited < 5_000; waited += 20) await new Promise((resolve) => setTimeout(resolve, 20));
  };

  it("is refused unread with RESOURCE_EXHAUSTED naming its size, logged and counted once", async () => {
    const request = { sequenceId: "over", text: "a".repeat(LIMIT) };
    const size = PrefillRequest.encode(PrefillRequest.fromPartial(request)).finish().length;
    const details = `Received message larger than max (${size} vs ${LIMIT})`;
    expect(await statusOf(client.prefill(request))).toEqual({ code: status.RESOURCE_EXHAUSTED, details });
    await recorded(1);
    expect(prefillLines()).toEqual([expect.objectContaining({ level: "warn", code: "RESOURCE_EXHAUSTED", error: details })]);
    expect(await prefillCount("RESOURCE_EXHAUSTED")).toBe(1);
    // Nothing was read: the sequence was never made.
    expect((await client.stats()).sequenceCount).toBe(0);
  });

  it("counts a call read under the limit once, whether it succeeds or its handler answers RESOURCE_EXHAUSTED", async () => {
    await client.prefill({ sequenceId: "short", text: "Once upon a time" });
    const refused = await statusOf(client.prefill({ sequenceId: "long", text: REFERENCE_TEXT }));
    expect(refused.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(refused.details).not.toMatch(/^Received message/);
    await recorded(3);
    expect(prefillLines().map((line) => [line.code, line.sequence_id])).toEqual([
      ["RESOURCE_EXHAUSTED", undefined],
      ["OK", "short"],
      ["RESOURCE_EXHAUSTED", "long"],
    ]);
    expect([await prefillCount("OK"), await prefillCount("RESOURCE_EXHAUSTED")]).toEqual([1, 2]);
  });
});
