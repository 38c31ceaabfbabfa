import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
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
  /** A server certificate signed by the CA, valid from `notBefore` to `notAfter` (openssl's YYYYMMDDHHMMSSZ): an expired or a future one. */
  datedServer(notBefore: string, notAfter: string): { certPath: string; keyPath: string };
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
  let dated = 0;
  // `openssl req -x509` cannot date a certificate in the past (before OpenSSL 3.4); `openssl ca` can, given a minimal config.
  const caConfig = join(dir, "ca.cnf");
  writeFileSync(caConfig, `[ca]\ndefault_ca = dated\n[dated]\ndatabase = ${join(dir, "index.txt")}\nnew_certs_dir = ${dir}\nserial = ${join(dir, "serial")}\ndefault_md = sha256\npolicy = any\nunique_subject = no\n[any]\ncommonName = supplied\n`);
  writeFileSync(join(dir, "index.txt"), "");
  writeFileSync(join(dir, "serial"), "1000\n");
  const datedServer = (notBefore: string, notAfter: string) => {
    const name = `dated-${dated++}`;
    const [certPath, keyPath, requestPath] = [join(dir, `${name}.pem`), join(dir, `${name}.key`), join(dir, `${name}.csr`)];
    execFileSync("openssl", ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=localhost", "-keyout", keyPath, "-out", requestPath], { stdio: "ignore" });
    const signing = ["-config", caConfig, "-cert", caPath, "-keyfile", caKey, "-in", requestPath, "-out", certPath, "-notext"];
    execFileSync("openssl", ["ca", "-batch", ...signing, "-startdate", notBefore, "-enddate", notAfter], { stdio: "ignore" });
    return { certPath, keyPath };
  };
  return {
    caPath,
    serverCertPath: server.certPath,
    serverKeyPath: server.keyPath,
    client: (cn) => issue(`client-${clients++}`, `/CN=${cn}`, [...leaf, "extendedKeyUsage=clientAuth"], true),
    renewServer: () => issue(`server-${++renewals}`, "/CN=localhost", serverExtensions, true),
    datedServer,
  };
}
