import { Client, credentials, InterceptingCall, type ChannelCredentials, type ClientOptions, type Interceptor } from "@grpc/grpc-js";
import { writeFileSync } from "node:fs";
import { Engine, type EngineModel, type EngineOptions } from "../../../src/engine/engine.js";
import { KvwardenClient } from "../../../src/client/index.js";
import { AuthTokens } from "../../../src/server/auth-tokens.js";
import { Authenticator } from "../../../src/server/authenticator.js";
import { KvwardenServer, type KvwardenServerOptions, type ListenOptions } from "../../../src/sidecar/kvwarden-server.js";
import { DEFAULT_TEST_OPTIONS } from "../../support/test-server.js";

export interface SecureServerOptions {
  engine?: Partial<EngineOptions>;
  /** Contents of an auth tokens file, written to `tokensPath`. */
  tokens?: { path: string; text: string };
  /** Tenants from client certificates (needs `listen.tls` with a client CA). */
  clientCertificates?: boolean;
  listen?: ListenOptions;
  server?: Omit<KvwardenServerOptions, "authenticator">;
}

export interface SecureServer {
  server: KvwardenServer;
  engine: Engine;
  tokens?: AuthTokens;
  address: string;
  close(): Promise<void>;
}

/** A real server on an ephemeral loopback port, with the authentication and listener options the CLI would give it. */
export async function startSecureServer(model: EngineModel, options: SecureServerOptions = {}): Promise<SecureServer> {
  const engine = new Engine(model, { ...DEFAULT_TEST_OPTIONS, ...options.engine });
  if (options.tokens) writeFileSync(options.tokens.path, options.tokens.text);
  const tokens = options.tokens && new AuthTokens(options.tokens.path);
  const authenticator = new Authenticator({ tokens, clientCertificates: options.clientCertificates });
  const server = new KvwardenServer(engine, { executionProvider: "cpu", version: "test" }, { ...options.server, authenticator });
  const port = await server.listen("127.0.0.1:0", options.listen);
  return { server, engine, tokens, address: `127.0.0.1:${port}`, close: () => server.close(1_000) };
}

/** The shipped client of `address`, presenting `token` when given. */
export function clientOf(address: string, token?: string, channel: ChannelCredentials = credentials.createInsecure(), options: ClientOptions = {}): KvwardenClient {
  return new KvwardenClient(address, { token, credentials: channel, channelOptions: options });
}

/** Sends `authorization: Bearer TOKEN` with every call (grpc-js attaches call credentials only to secure channels). */
function bearer(token: string): Interceptor {
  return (options, next) =>
    new InterceptingCall(next(options), {
      start(metadata, listener, proceed) {
        metadata.set("authorization", `Bearer ${token}`);
        proceed(metadata, listener);
      },
    });
}

/**
 * A bare grpc-js client of `address`, presenting `token` when given, for tests that send raw
 * bytes (malformed or oversized messages) the shipped client, which encodes every request, cannot send.
 */
export function rawClientOf(address: string, token?: string): Client {
  return new Client(address, credentials.createInsecure(), { interceptors: token ? [bearer(token)] : [] });
}
