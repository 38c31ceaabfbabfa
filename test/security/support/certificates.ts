import { execFileSync } from "node:child_process";
import { join } from "node:path";

export interface Certificates {
  /** PEM of the CA that signed everything below. */
  caPath: string;
  serverCertPath: string;
  serverKeyPath: string;
  /** A client certificate and key signed by the CA, with subject CN `cn`. */
  client(cn: string): { certPath: string; keyPath: string };
  /** Another server certificate (new key, new serial) for localhost and 127.0.0.1, signed by the CA: a renewal. */
  renewServer(): { certPath: string; keyPath: string };
}

/** A throwaway CA, a server certificate for localhost and 127.0.0.1, and client certificates on demand (openssl CLI, EC keys: fast). */
export function makeCertificates(dir: string): Certificates {
  const caPath = join(dir, "ca.pem");
  const caKey = join(dir, "ca.key");
  const issue = (name: string, subject: string, extensions: string[], signed: boolean) => {
    const certPath = join(dir, `${name}.pem`);
    const keyPath = join(dir, `${name}.key`);
    const args = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", subject];
    const signing = signed ? ["-CA", caPath, "-CAkey", caKey] : [];
    execFileSync("openssl", [...args, "-keyout", keyPath, "-out", certPath, ...extensions.flatMap((e) => ["-addext", e]), ...signing], { stdio: "ignore" });
    return { certPath, keyPath };
  };
  issue("ca", "/CN=kvwarden test CA", [], false);
  const leaf = ["basicConstraints=critical,CA:FALSE"];
  const serverExtensions = [...leaf, "subjectAltName=IP:127.0.0.1,DNS:localhost", "extendedKeyUsage=serverAuth"];
  const server = issue("server", "/CN=localhost", serverExtensions, true);
  let clients = 0;
  let renewals = 0;
  return {
    caPath,
    serverCertPath: server.certPath,
    serverKeyPath: server.keyPath,
    client: (cn) => issue(`client-${clients++}`, `/CN=${cn}`, [...leaf, "extendedKeyUsage=clientAuth"], true),
    renewServer: () => issue(`server-${++renewals}`, "/CN=localhost", serverExtensions, true),
  };
}
