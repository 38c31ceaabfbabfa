import { credentials } from "@grpc/grpc-js";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeCertificates } from "../../security/support/certificates.js";
import { startSecureServer } from "../../security/support/secure-server.js";
import type { KvwardenClientOptions } from "../../../src/client/index.js";
import { loadTestModel } from "../../support/test-model.js";

/** The one token the server accepts (tenant "clients"). */
export const CLIENT_TOKEN = "installed-client-0123456789abcdef";

export interface ProtectedServer {
  address: string;
  /** PEM of the CA that signed the server's certificate (for 127.0.0.1 and localhost). */
  caPath: string;
  /** The source tree's client, with the CA and the token. */
  clientOptions: KvwardenClientOptions;
  close(): Promise<void>;
}

/**
 * A real kvwarden server on an ephemeral loopback port that serves TLS and requires CLIENT_TOKEN,
 * as `serve --tls-cert --tls-key --auth-tokens` would: a client passes only with both options right.
 */
export async function startProtectedServer(): Promise<ProtectedServer> {
  const folder = await mkdtemp(join(tmpdir(), "kvwarden-protected-"));
  const certs = makeCertificates(folder);
  const sidecar = await startSecureServer(await loadTestModel(), {
    tokens: { path: join(folder, "tokens"), text: `${CLIENT_TOKEN} clients\n` },
    listen: { tls: { certPath: certs.serverCertPath, keyPath: certs.serverKeyPath } },
  });
  return {
    address: sidecar.address,
    caPath: certs.caPath,
    clientOptions: {
      token: CLIENT_TOKEN,
      credentials: credentials.createSsl(await readFile(certs.caPath)),
      // grpc-js checks the name it connects to; the certificate names localhost as well as 127.0.0.1.
      channelOptions: { "grpc.ssl_target_name_override": "localhost" },
    },
    async close() {
      await sidecar.close();
      await rm(folder, { recursive: true, force: true });
    },
  };
}
