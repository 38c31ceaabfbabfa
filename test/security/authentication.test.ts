import { credentials, loadPackageDefinition, Metadata, status, type Client, type ServiceError } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { ClientHttp2Session, IncomingHttpHeaders } from "node:http2";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EngineModel } from "../../src/engine/engine.js";
import { KvwardenClient } from "../../src/client/index.js";
import { parseAuthTokens } from "../../src/server/auth-tokens.js";
import type { LogFields } from "../../src/telemetry/json-log.js";
import { loadTestModel } from "../support/test-model.js";
import { statusOf } from "../support/test-server.js";
import { connectAppendingHeader } from "./support/appended-header.js";
import { clientOf, rawClientOf, startSecureServer, type SecureServer } from "./support/secure-server.js";

const ALICE = "alice-token-0123456789abcdef";
const BOB = "bob-token-0123456789abcdef";

describe("the auth tokens file", () => {
  it("reads TOKEN TENANT lines, skipping comments and blank lines; a tenant may hold several tokens", () => {
    const tenants = parseAuthTokens(`# rotated monthly\n\n${ALICE} alice\n  ${BOB}   bob  \nalice-second-token-000000 alice\n`, "tokens");
    expect([...tenants.values()]).toEqual(["alice", "bob", "alice"]);
  });

  it.each([
    ["one field", `${ALICE}\n`, /tokens:1: expected "TOKEN TENANT", got 1 fields/],
    ["three fields", `${ALICE} alice extra\n`, /got 3 fields/],
    ["a short token", "short alice\n", /at least 16 characters/],
    ["a bad tenant name", `${ALICE} ../alice\n`, /tenant '..\/alice' is not a valid name/],
    ["a duplicate token", `${ALICE} alice\n${ALICE} bob\n`, /tokens:2: this token is already listed/],
    ["no tokens at all", "# nothing yet\n", /lists no tokens/],
  ])("refuses %s, naming the line and never the token", (_, text, message) => {
    let error: Error | undefined;
    try {
      parseAuthTokens(text, "tokens");
    } catch (caught) {
      error = caught as Error;
    }
    expect(error?.message).toMatch(message);
    expect(error?.message).not.toContain(ALICE);
  });
});

/** A grpc.health.v1 client, loaded from the proto its package ships. */
const require = createRequire(import.meta.url);
const HEALTH_PROTO = join(dirname(require.resolve("grpc-health-check/package.json")), "proto/health/v1/health.proto");
type HealthClient = Client & { check(request: { service: string }, callback: (error: ServiceError | null, response: { status: string }) => void): void };
const { grpc } = loadPackageDefinition(loadSync(HEALTH_PROTO, { enums: String })) as unknown as {
  grpc: { health: { v1: { Health: new (address: string, creds: ReturnType<typeof credentials.createInsecure>) => HealthClient } } };
};

describe("bearer tokens over gRPC", () => {
  let model: EngineModel;
  let sidecar: SecureServer;
  const folder = mkdtempSync(join(tmpdir(), "kvwarden-auth-"));
  const tokensPath = join(folder, "tokens");
  const logs: LogFields[] = [];
  const clients: { close(): void }[] = [];
  const client = (token?: string) => {
    const made = clientOf(sidecar.address, token);
    clients.push(made);
    return made;
  };
  /** For the raw bytes the shipped client cannot send (it encodes every request). */
  const rawClient = (token?: string) => {
    const made = rawClientOf(sidecar.address, token);
    clients.push(made);
    return made;
  };
  const info = (c: KvwardenClient, metadata = new Metadata()) => c.info({ metadata });

  beforeAll(async () => {
    model = await loadTestModel();
    sidecar = await startSecureServer(model, { tokens: { path: tokensPath, text: `${ALICE} alice\n${BOB} bob\n` }, server: { log: (line) => logs.push(line) } });
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await sidecar.close();
    rmSync(folder, { recursive: true, force: true });
  });

  it("answers a valid token and refuses a missing, unknown or malformed one with UNAUTHENTICATED", async () => {
    await expect(info(client(ALICE))).resolves.toBeDefined();
    expect((await statusOf(info(client()))).code).toBe(status.UNAUTHENTICATED);
    expect((await statusOf(info(client("unknown-token-0123456789abc")))).code).toBe(status.UNAUTHENTICATED);
    const basic = new Metadata();
    basic.set("authorization", `Basic ${ALICE}`);
    expect((await statusOf(info(client(), basic)))).toMatchObject({ code: status.UNAUTHENTICATED, details: expect.stringContaining("Bearer") });
    // Every method is guarded, including the ones that only read.
    const anonymous = client();
    expect((await statusOf(anonymous.stats())).code).toBe(status.UNAUTHENTICATED);
    expect((await statusOf(anonymous.release("x"))).code).toBe(status.UNAUTHENTICATED);
    // Refusals are logged with their code, never with the token.
    expect(logs.some((line) => line.code === "UNAUTHENTICATED")).toBe(true);
    expect(JSON.stringify(logs)).not.toContain(ALICE);
  });

  /** Sends `body` as the raw message of a Prefill, with `token` if given; resolves to the status. */
  const rawPrefill = (body: Buffer, token?: string) =>
    new Promise<{ code: number; details: string }>((resolve) => {
      const raw = rawClient(token);
      raw.makeUnaryRequest("/kvwarden.v1.KvCache/Prefill", (bytes: Buffer) => bytes, (bytes: Buffer) => bytes, body, (error) =>
        resolve(error ? { code: error.code, details: error.details } : { code: status.OK, details: "" }),
      );
    });
  /** A PrefillRequest of exactly `bytes` bytes: only field 3 (text), whose length takes 3 bytes as a varint. */
  const textOnlyPrefill = (bytes: number) => {
    const length = bytes - 4;
    return Buffer.concat([Buffer.from([0x1a, (length & 0x7f) | 0x80, ((length >> 7) & 0x7f) | 0x80, length >> 14]), Buffer.alloc(length, "a")]);
  };
  const LIMIT = 1_114_112; // 65536 tokens x 16 bytes + 64 KiB: the default --max-sequence-tokens

  it("refuses an unauthenticated call on its metadata, without waiting for or reading its message", async () => {
    // The request is never sent: a server that read the message before authenticating would wait for it until the deadline.
    const refused = await new Promise<{ code: number; details: string }>((resolve) => {
      const raw = rawClient();
      const stream = raw.makeClientStreamRequest(
        "/kvwarden.v1.KvCache/Prefill",
        (bytes: Buffer) => bytes,
        (bytes: Buffer) => bytes,
        new Metadata(),
        { deadline: Date.now() + 20_000 },
        (error) => resolve(error ? { code: error.code, details: error.details } : { code: status.OK, details: "" }),
      );
      stream.write(Buffer.from([0x0a]));
    });
    expect(refused).toMatchObject({ code: status.UNAUTHENTICATED, details: expect.stringContaining("authentication is required") });
    // Over the size limit or not a message at all, an unauthenticated body is refused for its credentials alone.
    expect((await rawPrefill(textOnlyPrefill(LIMIT + 1))).code).toBe(status.UNAUTHENTICATED);
    expect((await rawPrefill(Buffer.from([0xff, 0xff]))).code).toBe(status.UNAUTHENTICATED);
    expect(logs.filter((line) => line.method === "kvwarden.v1.KvCache/Prefill" && line.code === "UNAUTHENTICATED")).toHaveLength(3);
  });

  it("reads an authenticated request up to what the largest Prefill can use, and refuses a larger one unread", async () => {
    // At the limit the message is read and parsed (then refused for its missing sequence_id).
    expect(await rawPrefill(textOnlyPrefill(LIMIT), ALICE)).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining("sequence_id") });
    const details = `Received message larger than max (${LIMIT + 1} vs ${LIMIT})`;
    expect(await rawPrefill(textOnlyPrefill(LIMIT + 1), ALICE)).toEqual({ code: status.RESOURCE_EXHAUSTED, details });
    // Logged as the caller's (test/telemetry/over-limit-messages.test.ts has the rest), once grpc-js has closed the stream.
    const refusal = () => logs.filter((line) => line.code === "RESOURCE_EXHAUSTED" && line.error === details);
    for (let waited = 0; refusal().length === 0 && waited < 5_000; waited += 20) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(refusal()).toEqual([expect.objectContaining({ method: "kvwarden.v1.KvCache/Prefill", tenant: "alice" })]);
  });

  it("refuses a call with two authorization headers, whichever tokens they hold", async () => {
    const [host, port] = sidecar.address.split(":");
    const infoStatus = (session: ClientHttp2Session) =>
      new Promise<{ code: number; details: string }>((resolve, reject) => {
        const stream = session.request({
          ":method": "POST",
          ":path": "/kvwarden.v1.KvCache/Info",
          "content-type": "application/grpc",
          te: "trailers",
          authorization: `Bearer ${ALICE}`,
        });
        let headers: IncomingHttpHeaders = {};
        stream.on("response", (response) => (headers = response));
        stream.on("trailers", (trailers) => (headers = { ...headers, ...trailers }));
        stream.on("close", () => resolve({ code: Number(headers["grpc-status"]), details: decodeURIComponent(String(headers["grpc-message"] ?? "")) }));
        stream.on("error", reject);
        stream.resume(); // the reply's message is not needed, only its status
        stream.end(Buffer.alloc(5)); // an empty InfoRequest, framed
      });
    const sessions: ClientHttp2Session[] = [];
    const appending = (name: string, value: string) => {
      const session = connectAppendingHeader(host, Number(port), name, value);
      sessions.push(session);
      return session;
    };
    // The same request with another extra header is answered: what refuses it is the second token.
    expect(await infoStatus(appending("x-extra", "1"))).toEqual({ code: status.OK, details: "OK" });
    for (const second of [BOB, ALICE, "unknown-token-0123456789abc"]) {
      expect(await infoStatus(appending("authorization", `Bearer ${second}`))).toEqual({
        code: status.UNAUTHENTICATED,
        details: "the authorization metadata must be one 'Bearer TOKEN' value",
      });
    }
    for (const session of sessions) session.close();
  });

  it("leaves health open for probes and guards reflection", async () => {
    const health = new grpc.health.v1.Health(sidecar.address, credentials.createInsecure());
    clients.push(health);
    const serving = await new Promise<string>((resolve, reject) => health.check({ service: "kvwarden.v1.KvCache" }, (e, r) => (e ? reject(e) : resolve(r.status))));
    expect(serving).toBe("SERVING");

    // ServerReflectionRequest { list_services: "" }, as raw bytes: field 7, length 0.
    const listServices = (token?: string) =>
      new Promise<{ code: number; body: string }>((resolve) => {
        const raw = rawClient(token);
        const stream = raw.makeBidiStreamRequest(
          "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
          (message: Buffer) => message,
          (bytes: Buffer) => bytes,
        );
        let body = "";
        stream.on("data", (bytes: Buffer) => (body += bytes.toString("latin1")));
        stream.on("error", (error: ServiceError) => resolve({ code: error.code, body }));
        stream.on("end", () => resolve({ code: status.OK, body }));
        stream.write(Buffer.from([0x3a, 0x00]));
        stream.end();
      });
    expect((await listServices()).code).toBe(status.UNAUTHENTICATED);
    const listed = await listServices(BOB);
    expect(listed.code).toBe(status.OK);
    expect(listed.body).toContain("kvwarden.v1.KvCache");
  });

  it("reloads the file: new tokens work and removed ones stop at once; a broken file keeps the tokens in force", async () => {
    const rotated = "alice-rotated-token-0123456789";
    writeFileSync(tokensPath, `${rotated} alice\n${BOB} bob\n`);
    expect(sidecar.tokens!.reload()).toEqual({ tokens: 2, tenants: 2 });
    await expect(info(client(rotated))).resolves.toBeDefined();
    expect((await statusOf(info(client(ALICE)))).code).toBe(status.UNAUTHENTICATED);

    writeFileSync(tokensPath, `${rotated} alice\nbroken\n`);
    expect(() => sidecar.tokens!.reload()).toThrow(/tokens:2/);
    await expect(info(client(rotated))).resolves.toBeDefined();
    await expect(info(client(BOB))).resolves.toBeDefined();
  });
});
