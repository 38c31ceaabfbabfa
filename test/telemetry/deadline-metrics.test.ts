import { status, type ServiceError } from "@grpc/grpc-js";
import { connect, constants } from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine } from "../../src/engine/engine.js";
import { DecodeRequest, KvwardenClient } from "../../src/client/index.js";
import { KvwardenServer } from "../../src/sidecar/kvwarden-server.js";
import { KvwardenMetrics } from "../../src/telemetry/metrics.js";
import { MetricsServer } from "../../src/telemetry/metrics-server.js";
import { loadTestModel } from "../support/test-model.js";
import { DEFAULT_TEST_OPTIONS } from "../support/test-server.js";

const LONG_DECODE = { maxNewTokens: 1_000_000, ignoreEos: true };

describe("calls ended by the client in the metrics", () => {
  let engine: Engine;
  let server: KvwardenServer;
  let metrics: KvwardenMetrics;
  let endpoint: MetricsServer;
  let client: KvwardenClient;
  let url: string;
  let port: number;

  beforeAll(async () => {
    engine = new Engine(await loadTestModel(), { ...DEFAULT_TEST_OPTIONS, allowPastContext: true, maxSequenceTokens: 1_000_000 });
    metrics = new KvwardenMetrics(() => engine.stats());
    server = new KvwardenServer(engine, { executionProvider: "cpu", version: "test" }, { metrics });
    port = await server.listen("127.0.0.1:0");
    client = new KvwardenClient(`127.0.0.1:${port}`);
    endpoint = new MetricsServer(metrics.registry);
    url = `http://127.0.0.1:${await endpoint.listen("127.0.0.1:0")}`;
  });
  afterAll(async () => {
    client.close();
    await Promise.all([server.close(1_000), endpoint.close()]);
  });

  /** Runs a long Decode of a new sequence until `end` stops it on the client; the status the client saw. */
  const decodeUntil = async (sequenceId: string, settings: { deadline?: Date }, end: (stream: { cancel(): void }) => void) => {
    await client.prefill({ sequenceId, tokenIds: [1] });
    const cancel = new AbortController();
    const tokens = client.decode({ sequenceId, ...LONG_DECODE }, { ...settings, signal: cancel.signal });
    try {
      let first = true;
      for await (const _ of tokens) {
        if (first) end({ cancel: () => cancel.abort() });
        first = false;
      }
      return status.OK;
    } catch (error) {
      return (error as ServiceError).code;
    }
  };
  const decodeCount = async (code: string) => {
    const text = await (await fetch(`${url}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith(`kvwarden:requests_total{method="Decode",code="${code}"}`));
    return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
  };
  /** The server records a call once its handler has wound down: waits for `count` ended by the client. */
  const recorded = async (count: number) => {
    while ((await decodeCount("DEADLINE_EXCEEDED")) + (await decodeCount("CANCELLED")) < count) await new Promise((resolve) => setTimeout(resolve, 20));
  };

  /**
   * A Decode over raw HTTP/2 announcing `grpc-timeout: 2S` whose client resets the stream (as gRPC clients
   * do at their deadline, and on cancel) `resetAfterMs` after sending it.
   */
  const rawDecode = async (sequenceId: string, resetAfterMs: number) => {
    await client.prefill({ sequenceId, tokenIds: [1] });
    const session = connect(`http://127.0.0.1:${port}`);
    const stream = session.request({ ":method": "POST", ":path": "/kvwarden.v1.KvCache/Decode", "content-type": "application/grpc", te: "trailers", "grpc-timeout": "2S" });
    const message = DecodeRequest.encode(DecodeRequest.fromPartial({ sequenceId, ...LONG_DECODE })).finish();
    const frame = Buffer.alloc(5 + message.length);
    frame.writeUInt32BE(message.length, 1);
    frame.set(message, 5);
    stream.end(frame);
    stream.resume();
    setTimeout(() => stream.close(constants.NGHTTP2_CANCEL), resetAfterMs);
    await new Promise((resolve) => stream.on("close", resolve));
    session.close();
  };

  it("counts a call the client's deadline ended as DEADLINE_EXCEEDED, and one it cancelled as CANCELLED", async () => {
    expect(await decodeUntil("deadline", { deadline: new Date(Date.now() + 300) }, () => {})).toBe(status.DEADLINE_EXCEEDED);
    // A client whose deadline passes a little before the server's (it rounded grpc-timeout up, as gRPC C-core does).
    await rawDecode("rounded-deadline", 1_985);
    expect(await decodeUntil("cancel", {}, (stream) => stream.cancel())).toBe(status.CANCELLED);
    // Cancelled long before its deadline.
    await rawDecode("early-cancel", 200);
    await recorded(4);
    expect(await decodeCount("DEADLINE_EXCEEDED")).toBe(2);
    expect(await decodeCount("CANCELLED")).toBe(2);
  });
});
