import { status, type ServiceError } from "@grpc/grpc-js";
import { trace } from "@opentelemetry/api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FinishReason, KvwardenClient } from "../../src/client/index.js";
import { only, recordSpans } from "../telemetry/support/span-recorder.js";
import { loadTestModel, REFERENCE_TEXT } from "../support/test-model.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

const codeOf = (promise: Promise<unknown>) => promise.then(() => status.OK, (error: ServiceError) => error.code);

describe("KvwardenClient, the TypeScript helper for Node backends", () => {
  let t: TestServer;
  let client: KvwardenClient;
  let recorder: ReturnType<typeof recordSpans>;

  beforeAll(async () => {
    recorder = recordSpans();
    t = await startTestServer(await loadTestModel(), { allowPastContext: true });
    client = new KvwardenClient(t.address);
    await client.waitForReady(5_000);
  });
  afterAll(async () => {
    client.close();
    await t.close();
    await recorder.stop();
  });

  it("prefills, generates, evicts, reads stats and releases with promises", async () => {
    const prefill = await client.prefill({ sequenceId: "helper", text: "Once upon a time" });
    expect(prefill.promptTokens).toBeGreaterThan(0);
    const story = await client.generate({ sequenceId: "helper", maxNewTokens: 20 });
    expect(story.tokenIds).toHaveLength(20);
    expect(story.finishReason).toBe(FinishReason.FINISH_REASON_LENGTH);
    expect(REFERENCE_TEXT.startsWith("Once upon a time" + story.text)).toBe(true);

    const evicted = await client.evict({ sequenceId: "helper", eviction: { policy: "streaming_llm", maxTokens: 8 } });
    expect(Number(evicted.eviction!.entriesAfter)).toBeLessThan(Number(evicted.eviction!.entriesBefore));
    const stats = await client.stats({ sequenceId: "helper" });
    expect(stats.sequences[0].layers[0].headLengths.every((n) => n <= 8)).toBe(true);
    expect((await client.info()).model!.name).toBe("stories260K");
    const fork = await client.fork("helper", "helper-copy");
    expect(fork).toEqual({ newSequenceId: "helper-copy", position: prefill.promptTokens + 20, kvBytes: stats.sequences[0].kvBytes });
    // The copy drops its pending token: the last generated token, whose keys were never computed.
    const truncated = await client.truncate("helper-copy", prefill.promptTokens + 19);
    expect(truncated).toMatchObject({ position: prefill.promptTokens + 19, droppedTokens: 1 });
    expect(await client.release("helper-copy")).toMatchObject({ found: true });
    expect(await client.release("helper")).toMatchObject({ found: true });
    expect(await codeOf(client.stats({ sequenceId: "helper" }))).toBe(status.NOT_FOUND);
  });

  it("cancels a Decode when the loop breaks, on abort, and at the deadline", async () => {
    await client.prefill({ sequenceId: "endless", text: "Once upon a time" });
    const endless = { sequenceId: "endless", maxNewTokens: 100_000, ignoreEos: true };
    let taken = 0;
    for await (const _ of client.decode(endless)) if (++taken === 3) break;
    expect(taken).toBe(3);

    const controller = new AbortController();
    const aborted = (async () => {
      // The server may still be winding down the broken stream: ABORTED until it has.
      for (;;) {
        try {
          for await (const _ of client.decode(endless, { signal: controller.signal })) controller.abort();
          return status.OK;
        } catch (error) {
          if ((error as ServiceError).code !== status.ABORTED) return (error as ServiceError).code;
        }
      }
    })();
    expect(await aborted).toBe(status.CANCELLED);

    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await codeOf(client.generate(endless, { deadline: 50 }))).toBe(status.DEADLINE_EXCEEDED);
  });

  it("carries the active trace context, so the sidecar's spans join the backend's trace", async () => {
    recorder.exporter.reset();
    const backend = trace.getTracer("backend");
    const parent = await backend.startActiveSpan("handle request", async (span) => {
      await client.prefill({ sequenceId: "traced", text: "Once" });
      span.end();
      return span.spanContext();
    });
    const server = only(recorder.exporter.getFinishedSpans(), "kvwarden.v1.KvCache/Prefill");
    expect(server.spanContext().traceId).toBe(parent.traceId);
    expect(server.parentSpanContext?.spanId).toBe(parent.spanId);
  });
});
