import { diag, DiagLogLevel, type DiagLogger } from "@opentelemetry/api";
import { hrTimeToNanoseconds } from "@opentelemetry/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadTestModel } from "../support/test-model.js";
import { decodeAll, startTestServer, type TestServer } from "../support/test-server.js";
import { recordSpans } from "./support/span-recorder.js";

describe("kvwarden.evict spans", () => {
  let recorder: ReturnType<typeof recordSpans>;
  let t: TestServer;
  const warnings: string[] = [];

  beforeAll(async () => {
    recorder = recordSpans();
    const log = (message: string) => warnings.push(message);
    const logger: DiagLogger = { error: log, warn: log, info: () => {}, debug: () => {}, verbose: () => {} };
    diag.setLogger(logger, DiagLogLevel.WARN);
    t = await startTestServer(await loadTestModel());
  });
  afterAll(async () => {
    diag.disable();
    await t.close();
    await recorder.stop();
  });

  it("cover their eviction: each ends after it starts, with a positive duration, under an h2o decode budget that evicts every step", async () => {
    await t.client.prefill({ sequenceId: "h2o", tokenIds: [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315] });
    await decodeAll(t.client, { sequenceId: "h2o", maxNewTokens: 24, ignoreEos: true, eviction: { policy: "h2o", maxTokens: 8 } });
    const spans = recorder.exporter.getFinishedSpans().filter((span) => span.name === "kvwarden.evict");
    expect(spans).toHaveLength(24);
    for (const span of spans) {
      expect(hrTimeToNanoseconds(span.endTime)).toBeGreaterThan(hrTimeToNanoseconds(span.startTime));
      expect(hrTimeToNanoseconds(span.duration)).toBeGreaterThan(0);
    }
    expect(warnings.filter((w) => w.includes("Inconsistent start and end time"))).toEqual([]);
  });
});
