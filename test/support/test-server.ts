import type { ServiceError } from "@grpc/grpc-js";
import { KvwardenClient, type CallSettings, type DecodeRequest, type DecodeResponse, type DeepPartial } from "../../src/client/index.js";
import { DEFAULT_ENGINE_OPTIONS } from "../../src/engine/engine-options.js";
import { Engine, type EngineModel, type EngineOptions } from "../../src/engine/engine.js";
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
  /** The shipped Node client (src/client/index.ts). */
  client: KvwardenClient;
  address: string;
  close(): Promise<void>;
}

/** A real server on an ephemeral loopback port with a real client. */
export async function startTestServer(model: EngineModel, options: Partial<EngineOptions> = {}): Promise<TestServer> {
  const engine = new Engine(model, { ...DEFAULT_TEST_OPTIONS, ...options });
  const server = new KvwardenServer(engine, { executionProvider: "cpu", version: "test" });
  const port = await server.listen("127.0.0.1:0");
  const address = `127.0.0.1:${port}`;
  const client = new KvwardenClient(address);
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

/** Collects a whole Decode stream (one token unless the request says more). */
export async function decodeAll(client: KvwardenClient, request: DeepPartial<DecodeRequest> & { sequenceId: string }, settings: CallSettings = {}): Promise<DecodeResponse[]> {
  const messages: DecodeResponse[] = [];
  for await (const message of client.decode({ maxNewTokens: 1, ...request }, settings)) messages.push(message);
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

/**
 * Decodes to the end of the stream, whatever ends it: the tokens received and the status (0, OK, when
 * it ran to its end). `onMessage` sees each token as it arrives and may cancel the call.
 */
export async function decodeOutcome(
  client: KvwardenClient,
  request: DeepPartial<DecodeRequest> & { sequenceId: string },
  onMessage: (message: DecodeResponse, received: number, cancel: () => void) => void = () => undefined,
): Promise<{ received: DecodeResponse[]; code: number }> {
  const received: DecodeResponse[] = [];
  const cancel = new AbortController();
  try {
    for await (const message of client.decode(request, { signal: cancel.signal })) {
      received.push(message);
      onMessage(message, received.length, () => cancel.abort());
    }
    return { received, code: 0 };
  } catch (error) {
    return { received, code: (error as ServiceError).code };
  }
}

/** Decodes, cancelling from the client once `after` tokens have arrived: those tokens, and the status the stream ended with. */
export function decodeCancelledAfter(client: KvwardenClient, request: DeepPartial<DecodeRequest> & { sequenceId: string }, after: number): Promise<{ received: DecodeResponse[]; code: number }> {
  return decodeOutcome(client, request, (_, received, cancel) => received === after && cancel());
}
