import { ServerCredentials } from "@grpc/grpc-js";
import { readFileSync } from "node:fs";

/** PEM files for a TCP listener. */
export interface TlsFiles {
  certPath: string;
  keyPath: string;
  /** Client certificates must chain to this CA bundle (mutual TLS). */
  clientCaPath?: string;
}

/** TLS credentials, requiring a verified client certificate when a client CA is given; insecure without files. */
export function serverCredentials(tls: TlsFiles | undefined): ServerCredentials {
  if (!tls) return ServerCredentials.createInsecure();
  const clientCa = tls.clientCaPath === undefined ? null : readFileSync(tls.clientCaPath);
  return ServerCredentials.createSsl(clientCa, [{ cert_chain: readFileSync(tls.certPath), private_key: readFileSync(tls.keyPath) }], clientCa !== null);
}
