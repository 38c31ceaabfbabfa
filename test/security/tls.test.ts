import { credentials, status } from "@grpc/grpc-js";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EngineModel } from "../../src/engine/engine.js";
import { KvwardenClient } from "../../src/client/index.js";
import { KvwardenServer } from "../../src/sidecar/kvwarden-server.js";
import type { LogFields } from "../../src/telemetry/json-log.js";
import { loadTestModel } from "../support/test-model.js";
import { statusOf } from "../support/test-server.js";
import { makeCertificates, type Certificates } from "./support/certificates.js";
import { clientOf, startSecureServer, type SecureServer } from "./support/secure-server.js";

describe("TLS and mutual TLS", () => {
  const folder = mkdtempSync(join(tmpdir(), "kvwarden-tls-"));
  let certs: Certificates;
  let model: EngineModel;
  const servers: SecureServer[] = [];
  const clients: KvwardenClient[] = [];

  beforeAll(async () => {
    certs = makeCertificates(folder);
    model = await loadTestModel();
  });
  afterAll(async () => {
    for (const client of clients) client.close();
    await Promise.all(servers.map((s) => s.close()));
    rmSync(folder, { recursive: true, force: true });
  });

  const start = async (options: Parameters<typeof startSecureServer>[1]) => {
    const server = await startSecureServer(model, options);
    servers.push(server);
    return server;
  };
  const tlsFiles = (clientCa?: string) => ({ certPath: certs.serverCertPath, keyPath: certs.serverKeyPath, clientCaPath: clientCa });
  /** A client trusting the test CA, presenting a certificate for `cn` if given. */
  const tlsClient = (address: string, cn?: string, token?: string) => {
    const ca = readFileSync(certs.caPath);
    const pair = cn === undefined ? undefined : certs.client(cn);
    const channel = pair ? credentials.createSsl(ca, readFileSync(pair.keyPath), readFileSync(pair.certPath)) : credentials.createSsl(ca);
    // The server certificate names localhost; the address is an IP (which TLS may not send as the server name).
    const client = clientOf(address, token, channel, { "grpc.ssl_target_name_override": "localhost" });
    clients.push(client);
    return client;
  };
  const stats = (client: KvwardenClient) => client.stats();

  it("serves TLS: a client trusting the CA is answered; a plaintext client is not", async () => {
    const { address } = await start({ listen: { tls: tlsFiles() } });
    expect((await stats(tlsClient(address))).tenant).toBe("");
    const plain = clientOf(address);
    clients.push(plain);
    expect((await statusOf(stats(plain))).code).toBe(status.UNAVAILABLE);
  });

  it("with a client CA, takes the tenant from the client certificate's subject CN and refuses clients without one", async () => {
    const { address } = await start({ listen: { tls: tlsFiles(certs.caPath) }, clientCertificates: true });
    const alice = tlsClient(address, "alice.backend");
    await alice.prefill({ sequenceId: "doc", tokenIds: [1, 403] });
    expect(await stats(alice)).toMatchObject({ tenant: "alice.backend", sequenceCount: 1 });
    expect(await stats(tlsClient(address, "bob.backend"))).toMatchObject({ tenant: "bob.backend", sequenceCount: 0 });
    // No certificate: the handshake fails.
    expect((await statusOf(stats(tlsClient(address)))).code).toBe(status.UNAVAILABLE);
    // A certificate whose CN is not a valid tenant name is refused by authentication.
    expect(await statusOf(stats(tlsClient(address, "no spaces allowed")))).toMatchObject({ code: status.UNAUTHENTICATED, details: expect.stringContaining("CN") });
  });

  it("with a client CA, logs a message over the receive limit as the certificate's tenant", async () => {
    const logs: LogFields[] = [];
    const { address } = await start({ listen: { tls: tlsFiles(certs.caPath) }, clientCertificates: true, server: { log: (line) => logs.push(line), maxRequestBytes: 1024 } });
    const refused = await statusOf(tlsClient(address, "alice.backend").prefill({ sequenceId: "doc", text: "a".repeat(1024) }));
    expect(refused).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: expect.stringMatching(/^Received message larger than max \(\d+ vs 1024\)$/) });
    // Recorded once grpc-js has closed the stream, which may be after the client hears it.
    const recorded = () => logs.filter((line) => line.method === "kvwarden.v1.KvCache/Prefill");
    for (let waited = 0; recorded().length === 0 && waited < 5_000; waited += 20) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(recorded()).toEqual([expect.objectContaining({ code: "RESOURCE_EXHAUSTED", tenant: "alice.backend", error: refused.details })]);
  });

  it("with a client CA and tokens, the token names the tenant", async () => {
    const token = "carol-token-0123456789abcdef";
    const { address } = await start({ listen: { tls: tlsFiles(certs.caPath) }, tokens: { path: join(folder, "tokens"), text: `${token} carol\n` }, clientCertificates: true });
    expect((await stats(tlsClient(address, "alice.backend", token))).tenant).toBe("carol");
    expect((await statusOf(stats(tlsClient(address, "alice.backend")))).code).toBe(status.UNAUTHENTICATED);
  });

  it("refuses TLS on a Unix socket", async () => {
    const server = new KvwardenServer(Promise.reject(new Error("unused")), { executionProvider: "cpu", version: "test" });
    server.ready.catch(() => {});
    await expect(server.listen(`unix:${join(folder, "s.sock")}`, { tls: tlsFiles() })).rejects.toThrow(/TLS is for host:port listeners/);
    await server.close(100);
  });
});
