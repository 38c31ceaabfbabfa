import { credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { DEFAULT_ENGINE_OPTIONS } from "../../src/engine/engine-options.js";
import { Engine, type EngineModel, type EngineOptions } from "../../src/engine/engine.js";
import {
  DecodeRequest,
  EvictRequest,
  ForkRequest,
  InfoRequest,
  KvCacheClient,
  PrefillRequest,
  ReleaseRequest,
  StatsRequest,
  TruncateRequest,
  type DecodeResponse,
} from "../../src/gen/kvwarden/v1/kvwarden.js";
import { KvwardenServer } from "../../src/sidecar/kvwarden-server.js";

/** The served defaults, smaller: a 64 MiB budget, 4096 entries per head, 64-token prefill chunks. */
export const DEFAULT_TEST_OPTIONS: EngineOptions = {
  ...DEFAULT_ENGINE_OPTIONS,
  kvBudgetBytes: 64 * 1024 * 1024,
  maxSequenceTokens: 4096,
  prefillChunkTokens: 64,
};

export interface TestServer {
  server: KvwardenServer;
  engine: Engine;
  client: KvCacheClient;
  address: string;
  close(): Promise<void>;
}

/** A real server on an ephemeral loopback port with a real client. */
export async function startTestServer(model: EngineModel, options: Partial<EngineOptions> = {}): Promise<TestServer> {
  const engine = new Engine(model, { ...DEFAULT_TEST_OPTIONS, ...options });
  const server = new KvwardenServer(engine, { executionProvider: "cpu", version: "test" });
  const port = await server.listen("127.0.0.1:0");
  const address = `127.0.0.1:${port}`;
  const client = new KvCacheClient(address, credentials.createInsecure());
  return {
    server,
    engine,
    client,
    address,
    async close() {
      client.close();
      await server.close(1_000);
    },
  };
}

type UnaryMethod<Req, Res> = (request: Req, metadata: Metadata, options: object, callback: (error: ServiceError | null, response: Res) => void) => unknown;

/** Request message types by client method, so tests can give only the fields they care about. */
const REQUEST_TYPES = new Map<unknown, { fromPartial(fields: object): unknown }>([
  [KvCacheClient.prototype.prefill, PrefillRequest],
  [KvCacheClient.prototype.evict, EvictRequest],
  [KvCacheClient.prototype.stats, StatsRequest],
  [KvCacheClient.prototype.release, ReleaseRequest],
  [KvCacheClient.prototype.info, InfoRequest],
  [KvCacheClient.prototype.fork, ForkRequest],
  [KvCacheClient.prototype.truncate, TruncateRequest],
]);

/** Calls a unary method as a promise; unset request fields take their proto defaults. */
export function call<Req, Res>(client: KvCacheClient, method: UnaryMethod<Req, Res>, request: DeepPartial<Req>): Promise<Res> {
  const full = REQUEST_TYPES.get(method)!.fromPartial(request as object) as Req;
  return new Promise((resolve, reject) =>
    method.call(client, full, new Metadata(), {}, (error, response) => (error ? reject(error) : resolve(response))),
  );
}

type DeepPartial<T> = T extends bigint | number | string | boolean ? T : T extends Array<infer U> ? DeepPartial<U>[] : { [K in keyof T]?: DeepPartial<T[K]> };

/** Collects a whole Decode stream. */
export async function decodeAll(client: KvCacheClient, request: DeepPartial<DecodeRequest> & { sequenceId: string }): Promise<DecodeResponse[]> {
  const messages: DecodeResponse[] = [];
  for await (const message of client.decode(DecodeRequest.fromPartial({ maxNewTokens: 1, ...request }))) messages.push(message);
  return messages;
}

/** The gRPC status code a promise fails with. */
export async function statusOf(promise: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await promise;
  } catch (error) {
    const { code, details } = error as ServiceError;
    return { code, details };
  }
  throw new Error("expected the call to fail");
}
