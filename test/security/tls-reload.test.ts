import { credentials, status, type ServiceError } from "@grpc/grpc-js";
import { X509Certificate } from "node:crypto";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkServerIdentity } from "node:tls";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { EngineModel } from "../../src/engine/engine.js";
import { DecodeRequest, KvwardenClient } from "../../src/client/index.js";
import { TlsCertificates, type TlsFiles } from "../../src/server/tls.js";
import { loadTestModel } from "../support/test-model.js";
import { statusOf } from "../support/test-server.js";
import { makeCertificates, type Certificates } from "./support/certificates.js";
import { clientOf, startSecureServer, type SecureServer } from "./support/secure-server.js";
import { spawnServe } from "../support/serve-process.js";

type Pair = { certPath: string; keyPath: string };
const fingerprint = (certPath: string) => new X509Certificate(readFileSync(certPath)).fingerprint256;

describe("TLS files reloaded on SIGHUP", () => {
  const folder = mkdtempSync(join(tmpdir(), "kvwarden-tls-reload-"));
  let certs: Certificates;
  /** A second CA, for client CA rotation. */
  let nextCerts: Certificates;
  let model: EngineModel;
  let servers: SecureServer[] = [];
  let clients: KvwardenClient[] = [];
  let mounts = 0;

  beforeAll(async () => {
    for (const name of ["ca", "next-ca"]) mkdirSync(join(folder, name));
    certs = makeCertificates(join(folder, "ca"));
    nextCerts = makeCertificates(join(folder, "next-ca"));
    model = await loadTestModel();
  });
  afterEach(async () => {
    for (const client of clients) client.close();
    await Promise.all(servers.map((s) => s.close()));
    [servers, clients] = [[], []];
  });
  afterAll(() => rmSync(folder, { recursive: true, force: true }));

  /** The paths the server is given (like a mounted Secret), holding copies of `pair` and `clientCa`. */
  const mount = (pair: Pair, clientCa?: string): TlsFiles => {
    const dir = join(folder, `mount-${mounts++}`);
    mkdirSync(dir);
    const files = { certPath: join(dir, "tls.crt"), keyPath: join(dir, "tls.key"), clientCaPath: clientCa && join(dir, "ca.crt") };
    install(files, pair, clientCa);
    return files;
  };
  /** Replaces the mounted files' contents, as a renewal does. */
  const install = (files: TlsFiles, pair: Pair, clientCa?: string) => {
    copyFileSync(pair.certPath, files.certPath);
    copyFileSync(pair.keyPath, files.keyPath);
    if (clientCa) copyFileSync(clientCa, files.clientCaPath!);
  };
  const original = (): Pair => ({ certPath: certs.serverCertPath, keyPath: certs.serverKeyPath });

  /**
   * A client trusting `ca` (both test CAs by default), presenting `pair` if given, on a connection of its own;
   * `seen` gets the fingerprint of the server certificate of every handshake it makes.
   */
  const tlsClient = (address: string, pair?: Pair, ca = Buffer.concat([readFileSync(certs.caPath), readFileSync(nextCerts.caPath)])) => {
    const seen: string[] = [];
    const verify = {
      checkServerIdentity: (host: string, cert: Parameters<typeof checkServerIdentity>[1]) => {
        seen.push(cert.fingerprint256);
        return checkServerIdentity(host, cert);
      },
    };
    const channel = pair ? credentials.createSsl(ca, readFileSync(pair.keyPath), readFileSync(pair.certPath), verify) : credentials.createSsl(ca, null, null, verify);
    const client = clientOf(address, undefined, channel, { "grpc.ssl_target_name_override": "localhost", "grpc.use_local_subchannel_pool": 1 });
    clients.push(client);
    return { client, seen };
  };
  const stats = (client: KvwardenClient) => client.stats();
  const start = async (tls: TlsCertificates, clientCertificates = false) => {
    const server = await startSecureServer(model, { listen: { tls }, clientCertificates, engine: { allowPastContext: true } });
    servers.push(server);
    return server;
  };

  it("new handshakes get the renewed certificate; an established connection and the Decode running on it go on", async () => {
    const files = mount(original());
    const tls = new TlsCertificates(files);
    const { address, engine } = await start(tls);
    const old = tlsClient(address);
    await old.client.prefill({ sequenceId: "story", tokenIds: [1, 403, 407, 261] });
    expect(old.seen).toEqual([fingerprint(certs.serverCertPath)]);

    const total = 1_000;
    let received = 0;
    // The generated client's stream: this test pauses reading it while the certificate changes, which an async iterator cannot.
    const stream = old.client.raw.decode(DecodeRequest.fromPartial({ sequenceId: "story", maxNewTokens: total, ignoreEos: true }));
    const firstMessage = new Promise<void>((resolve) => stream.once("data", () => resolve()));
    const ended = new Promise<number>((resolve) => {
      stream.on("data", () => received++);
      stream.on("error", (error: ServiceError) => resolve(error.code));
      stream.on("end", () => resolve(status.OK));
    });
    await firstMessage;
    stream.pause();

    const renewed = certs.renewServer();
    install(files, renewed);
    expect(tls.reload()).toMatchObject({ fingerprint256: fingerprint(renewed.certPath), subject: "CN=localhost" });
    // The Decode was still generating when the certificate changed.
    const during = engine.stats().sequences.find((s) => s.sequenceId === "story")!;
    expect(during.position).toBeLessThan(4 + total);
    expect(during.idleMs).toBe(0);

    const fresh = tlsClient(address);
    expect((await stats(fresh.client)).sequenceCount).toBe(1);
    expect(fresh.seen).toEqual([fingerprint(renewed.certPath)]);

    stream.resume();
    expect(await ended).toBe(status.OK);
    expect(received).toBe(total);
    // Calls on the established connection still work, without a new handshake.
    expect((await stats(old.client)).sequences[0]).toMatchObject({ sequenceId: "story", position: 4 + total });
    expect(old.seen).toEqual([fingerprint(certs.serverCertPath)]);
  });

  it("a broken replacement is refused, naming the file, and the certificate in force keeps serving", async () => {
    const files = mount(original());
    const tls = new TlsCertificates(files);
    const { address } = await start(tls);
    const renewed = certs.renewServer();
    const broken: [string, () => void, RegExp][] = [
      ["garbage key", () => (install(files, renewed), writeFileSync(files.keyPath, "not a key\n")), /TLS key .*tls\.key is not an unencrypted PEM private key/],
      ["key of another certificate", () => (install(files, renewed), copyFileSync(certs.serverKeyPath, files.keyPath)), /TLS key .*tls\.key does not belong to the certificate .*tls\.crt/],
      ["garbage certificate", () => (install(files, renewed), writeFileSync(files.certPath, "not a certificate\n")), /TLS certificate .*tls\.crt is not a PEM certificate/],
      ["missing key", () => (install(files, renewed), unlinkSync(files.keyPath)), /TLS key .*tls\.key cannot be read: ENOENT/],
    ];
    for (const [what, breakFiles, error] of broken) {
      breakFiles();
      expect(() => tls.reload(), what).toThrow(error);
      expect(tls.current.fingerprint256, what).toBe(fingerprint(certs.serverCertPath));
      const fresh = tlsClient(address);
      expect((await stats(fresh.client)).tenant, what).toBe("");
      expect(fresh.seen, what).toEqual([fingerprint(certs.serverCertPath)]);
    }
    // Repaired files are taken.
    install(files, renewed);
    tls.reload();
    const fresh = tlsClient(address);
    await stats(fresh.client);
    expect(fresh.seen).toEqual([fingerprint(renewed.certPath)]);
  });

  it("reloads the client CA: new handshakes must chain to the new one; established connections keep going", async () => {
    const files = mount(original(), certs.caPath);
    const tls = new TlsCertificates(files);
    expect(tls.current.clientCaCertificates).toBe(1);
    const { address } = await start(tls, true);
    const alice = tlsClient(address, certs.client("alice.backend"));
    await alice.client.prefill({ sequenceId: "doc", tokenIds: [1, 403] });
    expect((await statusOf(stats(tlsClient(address, nextCerts.client("bob.backend")).client))).code).toBe(status.UNAVAILABLE);

    // A damaged bundle (cut off mid-certificate) is refused; OpenSSL alone would take it and refuse every client.
    writeFileSync(files.clientCaPath!, readFileSync(nextCerts.caPath).subarray(0, 300));
    expect(() => tls.reload()).toThrow(/TLS client CA .*ca\.crt holds an incomplete PEM block/);
    writeFileSync(files.clientCaPath!, "");
    expect(() => tls.reload()).toThrow(/TLS client CA .*ca\.crt holds no PEM certificate/);
    expect((await stats(tlsClient(address, certs.client("alice.backend")).client)).tenant).toBe("alice.backend");

    install(files, original(), nextCerts.caPath);
    expect(tls.reload().clientCaCertificates).toBe(1);
    expect((await stats(tlsClient(address, nextCerts.client("bob.backend")).client)).tenant).toBe("bob.backend");
    expect((await statusOf(stats(tlsClient(address, certs.client("alice.backend")).client))).code).toBe(status.UNAVAILABLE);
    // Alice's connection was made under the old CA and stays.
    expect(await stats(alice.client)).toMatchObject({ tenant: "alice.backend", sequenceCount: 1 });
    expect(alice.seen).toHaveLength(1);
  });

  it("kvwarden serve warns of an expired certificate at start and of a not yet valid one on SIGHUP, serving them all the same", async () => {
    const files = mount(certs.datedServer("20200101000000Z", "20200102000000Z"));
    const serve = spawnServe(["--listen", "127.0.0.1:0", "--tls-cert", files.certPath, "--tls-key", files.keyPath]);
    const { child, exited } = serve;
    const lines = () =>
      serve.stderr
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
    const until = (msg: string, count = 1) =>
      new Promise<void>((resolve, reject) => {
        const deadline = Date.now() + 30_000;
        const poll = () => {
          if (lines().filter((line) => line.msg === msg).length >= count) resolve();
          else if (Date.now() > deadline || child.exitCode !== null) reject(new Error(`no '${msg}' in ${serve.stderr}`));
          else setTimeout(poll, 20);
        };
        poll();
      });
    const warnings = () => lines().filter((line) => line.level === "warn");
    try {
      await until("serving");
      expect(warnings()).toEqual([
        expect.objectContaining({
          msg: "the TLS certificate expired on Jan  2 00:00:00 2020 GMT: clients will refuse it",
          file: files.certPath,
          notBefore: "Jan  1 00:00:00 2020 GMT",
          notAfter: "Jan  2 00:00:00 2020 GMT",
        }),
      ]);
      install(files, certs.datedServer("20990101000000Z", "20990102000000Z"));
      child.kill("SIGHUP");
      await until("reloaded TLS certificate");
      expect(warnings().map((line) => line.msg)).toEqual([
        "the TLS certificate expired on Jan  2 00:00:00 2020 GMT: clients will refuse it",
        "the TLS certificate is not valid before Jan  1 00:00:00 2099 GMT: clients will refuse it",
      ]);
      // A valid renewal brings no warning.
      install(files, certs.renewServer());
      child.kill("SIGHUP");
      await until("reloaded TLS certificate", 2);
      expect(warnings()).toHaveLength(2);
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
    } finally {
      child.kill("SIGKILL");
    }
  });

  it("kvwarden serve re-reads --tls-cert and --tls-key on SIGHUP, and logs a broken replacement while the old certificate serves", async () => {
    const files = mount(original());
    const serve = spawnServe(["--listen", "127.0.0.1:0", "--tls-cert", files.certPath, "--tls-key", files.keyPath]);
    const { child, exited } = serve;
    /** The first log line with `msg` (and `also`) after the first `from` characters of serve.stderr, once there. */
    const logged = (msg: string, from = 0) =>
      new Promise<Record<string, unknown>>((resolve, reject) => {
        const deadline = Date.now() + 30_000;
        const poll = () => {
          const line = serve.stderr.slice(from).split("\n").find((l) => l.includes(`"msg":"${msg}`));
          if (line) resolve(JSON.parse(line));
          else if (Date.now() > deadline || child.exitCode !== null) reject(new Error(`no '${msg}' in ${serve.stderr}`));
          else setTimeout(poll, 20);
        };
        poll();
      });
    try {
      const address = `127.0.0.1:${(await logged("serving")).port}`;
      expect(serve.stderr).toContain('"tls":"on"');
      const old = tlsClient(address);
      await old.client.prefill({ sequenceId: "story", tokenIds: [1, 403] });
      expect(old.seen).toEqual([fingerprint(certs.serverCertPath)]);

      const renewed = certs.renewServer();
      install(files, renewed);
      let from = serve.stderr.length;
      child.kill("SIGHUP");
      expect(await logged("reloaded TLS certificate", from)).toMatchObject({ level: "info", file: files.certPath, fingerprint256: fingerprint(renewed.certPath) });
      const fresh = tlsClient(address);
      expect((await stats(fresh.client)).sequenceCount).toBe(1);
      expect(fresh.seen).toEqual([fingerprint(renewed.certPath)]);

      // A renewal half-written: a new certificate beside a garbage key.
      install(files, certs.renewServer());
      writeFileSync(files.keyPath, "-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n");
      from = serve.stderr.length;
      child.kill("SIGHUP");
      const error = await logged("TLS certificate not reloaded", from);
      expect(error).toMatchObject({ level: "error", msg: expect.stringContaining(`TLS key ${files.keyPath} is not an unencrypted PEM private key`) });
      const after = tlsClient(address);
      expect((await stats(after.client)).sequenceCount).toBe(1);
      expect(after.seen).toEqual([fingerprint(renewed.certPath)]);
      // The first connection, from before both reloads, is still the one in use.
      expect((await stats(old.client)).sequenceCount).toBe(1);
      expect(old.seen).toHaveLength(1);

      for (const client of clients) client.close();
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
    } finally {
      child.kill("SIGKILL");
    }
  });
});
