import OpenAI from "openai";
import { Engine, type EngineModel, type EngineOptions } from "../../src/engine/engine.js";
import { KvwardenClient } from "../../src/client/index.js";
import { KvwardenServer, type KvwardenServerOptions } from "../../src/sidecar/kvwarden-server.js";
import { DEFAULT_TEST_OPTIONS } from "./test-server.js";

export interface HttpTestServer {
  server: KvwardenServer;
  engine: Engine;
  /** The gRPC client of the same server, to compare both paths. */
  grpc: KvwardenClient;
  /** http://127.0.0.1:PORT (the API is under /v1). */
  baseUrl: string;
  /** The official OpenAI client, pointed at this server (no retries: tests see every status). */
  openai(apiKey?: string): OpenAI;
  close(): Promise<void>;
}

/** A real server with gRPC and the OpenAI-compatible HTTP API, each on an ephemeral loopback port. */
export async function startHttpTestServer(model: EngineModel, engineOptions: Partial<EngineOptions> = {}, serverOptions: KvwardenServerOptions = {}): Promise<HttpTestServer> {
  const engine = new Engine(model, { ...DEFAULT_TEST_OPTIONS, ...engineOptions });
  const server = new KvwardenServer(engine, { executionProvider: "cpu", version: "test" }, serverOptions);
  const grpcPort = await server.listen("127.0.0.1:0");
  const httpPort = await server.listenHttp("127.0.0.1:0");
  const grpc = new KvwardenClient(`127.0.0.1:${grpcPort}`);
  const baseUrl = `http://127.0.0.1:${httpPort}`;
  return {
    server,
    engine,
    grpc,
    baseUrl,
    openai: (apiKey = "no-key-needed-here") => new OpenAI({ baseURL: `${baseUrl}/v1`, apiKey, maxRetries: 0 }),
    async close() {
      grpc.close();
      await server.close(1_000);
    },
  };
}

/** POSTs JSON with fetch (plain HTTP, no SDK in between). */
export function postJson(url: string, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<Response> {
  return fetch(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body), signal });
}
