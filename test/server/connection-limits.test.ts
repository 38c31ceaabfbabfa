import { connectivityState } from "@grpc/grpc-js";
import { connect, type Socket } from "node:net";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { KvwardenClient } from "../../src/client/index.js";
import { Engine, type EngineModel } from "../../src/engine/engine.js";
import { connectionOptions, DEFAULT_CONNECTION_LIMITS, type ConnectionLimits } from "../../src/server/connection-limits.js";
import { KvwardenServer } from "../../src/sidecar/kvwarden-server.js";
import { loadTestModel } from "../support/test-model.js";
import { DEFAULT_TEST_OPTIONS } from "../support/test-server.js";

const PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HOUR = 3_600_000;

describe("connections that do nothing useful are closed", () => {
  let model: EngineModel;
  let server: KvwardenServer | undefined;
  let port: number;
  beforeAll(async () => {
    model = await loadTestModel();
  });
  afterEach(async () => {
    await server?.close(100);
    server = undefined;
  });

  const start = async (limits: ConnectionLimits) => {
    server = new KvwardenServer(new Engine(model, DEFAULT_TEST_OPTIONS), { executionProvider: "cpu", version: "test" }, { connectionLimits: limits });
    port = await server.listen("127.0.0.1:0");
  };
  /** A raw TCP connection that sends `bytes` and then nothing, never answering the server's frames. */
  const mute = (bytes: string) => {
    const socket = connect(port, "127.0.0.1", () => socket.write(bytes));
    socket.resume();
    return socket;
  };
  const closed = (socket: Socket) => new Promise<void>((resolve) => socket.on("close", () => resolve()));

  it("has documented defaults: idle connections close after 5 minutes, unanswered pings after 60 + 20 seconds", () => {
    expect(connectionOptions(DEFAULT_CONNECTION_LIMITS)).toEqual({
      "grpc.max_connection_idle_ms": 300_000,
      "grpc.keepalive_time_ms": 60_000,
      "grpc.keepalive_timeout_ms": 20_000,
    });
  });

  it("closes a connection that never sends the HTTP/2 preface, and one that sends nothing after it, once idle", async () => {
    await start({ idleMs: 200, keepaliveMs: HOUR, keepaliveTimeoutMs: HOUR });
    await Promise.all([closed(mute("")), closed(mute(PREFACE))]);
  });

  it("closes a connection whose peer stops answering pings, however recently it connected", async () => {
    await start({ idleMs: HOUR, keepaliveMs: 100, keepaliveTimeoutMs: 100 });
    await closed(mute(PREFACE));
  });

  it("lets a client whose idle connection was closed call again", async () => {
    await start({ idleMs: 200, keepaliveMs: HOUR, keepaliveTimeoutMs: HOUR });
    const client = new KvwardenClient(`127.0.0.1:${port}`);
    await client.info();
    const channel = client.raw.getChannel();
    await new Promise<void>((resolve, reject) => {
      const watch = (error?: Error) => {
        if (error) return reject(error);
        const state = channel.getConnectivityState(false);
        if (state !== connectivityState.READY) resolve();
        else channel.watchConnectivityState(state, Date.now() + 30_000, watch);
      };
      watch();
    });
    await expect(client.info()).resolves.toMatchObject({ model: { name: "stories260K" } });
    client.close();
  });
});
