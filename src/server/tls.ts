import { experimental, ServerCredentials } from "@grpc/grpc-js";
import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { createSecureContext } from "node:tls";

/** PEM files for a TCP listener. */
export interface TlsFiles {
  certPath: string;
  keyPath: string;
  /** Client certificates must chain to this CA bundle (mutual TLS). */
  clientCaPath?: string;
}

/** What a (re)load put in force: the serving certificate (its leaf) and how many client CA certificates. */
export interface TlsCertificateInfo {
  subject: string;
  serialNumber: string;
  fingerprint256: string;
  notBefore: string;
  notAfter: string;
  clientCaCertificates?: number;
}

interface Material {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
  info: TlsCertificateInfo;
}

type IdentityListener = experimental.IdentityCertificateUpdateListener;
type CaListener = experimental.CaCertificateUpdateListener;

/**
 * The TLS files of a listener, read at start and re-read on demand (SIGHUP),
 * served through grpc-js's certificate provider credentials: an update calls
 * setSecureContext on the listener, so new handshakes use the new files while
 * established connections (and their calls) keep theirs.
 *
 * Only material that passed every check reaches grpc-js: a provider update of
 * null, or options that setSecureContext rejects, would make grpc-js drop
 * every new connection. A failed reload throws, naming the file, and the
 * files in force stay in force.
 */
export class TlsCertificates implements experimental.CertificateProvider {
  private material: Material;
  private readonly identityListeners = new Set<IdentityListener>();
  private readonly caListeners = new Set<CaListener>();

  /** Reads and checks the files; throws, naming the file, if one is unreadable or they do not fit together. */
  constructor(readonly files: TlsFiles) {
    this.material = readMaterial(files);
  }

  /** Client certificates are required (a client CA is configured). */
  get mutual(): boolean {
    return this.files.clientCaPath !== undefined;
  }

  /** The certificate in force. */
  get current(): TlsCertificateInfo {
    return this.material.info;
  }

  /**
   * Re-reads the files and, if they pass every check, puts them in force for
   * new handshakes; otherwise throws (naming the file) and changes nothing.
   */
  reload(): TlsCertificateInfo {
    const next = readMaterial(this.files);
    this.material = next;
    // Both updates land synchronously, before any handshake could see one without the other.
    for (const listener of this.identityListeners) listener(identityOf(next));
    for (const listener of this.caListeners) listener(caOf(next));
    return next.info;
  }

  /** Server credentials that follow this provider's reloads. */
  credentials(): ServerCredentials {
    // grpc-js 1.14 names these parameters (caCertificateProvider, identityCertificateProvider) but builds the
    // credentials from them as (identity, CA); this one object serves both roles, and with no client CA it passes
    // null where the CA provider goes, which is also what turns off requesting client certificates.
    return experimental.createCertificateProviderServerCredentials(this, this.mutual ? this : null, this.mutual);
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    // grpc-js subscribes before it registers the listener's watcher, so the first update must come later.
    process.nextTick(() => this.identityListeners.has(listener) && listener(identityOf(this.material)));
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
  }

  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    process.nextTick(() => this.caListeners.has(listener) && listener(caOf(this.material)));
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }
}

/**
 * What is wrong with the dates of the certificate in `info` at `now`, if
 * anything: clients refuse an expired or not yet valid certificate, but
 * neither OpenSSL nor grpc-js stops a server from serving it.
 */
export function validityProblem(info: TlsCertificateInfo, now = Date.now()): string | undefined {
  if (now < Date.parse(info.notBefore)) return `is not valid before ${info.notBefore}`;
  if (now > Date.parse(info.notAfter)) return `expired on ${info.notAfter}`;
  return undefined;
}

/** TLS credentials (following reloads of `tls` when it is a TlsCertificates), requiring a verified client certificate when a client CA is given; insecure without files. */
export function serverCredentials(tls: TlsFiles | TlsCertificates | undefined): ServerCredentials {
  if (!tls) return ServerCredentials.createInsecure();
  return (tls instanceof TlsCertificates ? tls : new TlsCertificates(tls)).credentials();
}

function identityOf(material: Material): experimental.IdentityCertificateUpdate {
  return { certificate: material.cert, privateKey: material.key };
}

function caOf(material: Material): experimental.CaCertificateUpdate | null {
  // Asked for only with a client CA, which then is always there.
  return material.ca ? { caCertificate: material.ca } : null;
}

function readPem(what: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new Error(`${what} ${path} cannot be read: ${(error as Error).message}`);
  }
}

function readMaterial(files: TlsFiles): Material {
  const cert = readPem("TLS certificate", files.certPath);
  const key = readPem("TLS key", files.keyPath);
  const ca = files.clientCaPath === undefined ? undefined : readPem("TLS client CA", files.clientCaPath);
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch (error) {
    throw new Error(`TLS certificate ${files.certPath} is not a PEM certificate: ${(error as Error).message}`);
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch (error) {
    throw new Error(`TLS key ${files.keyPath} is not an unencrypted PEM private key: ${(error as Error).message}`);
  }
  if (!leaf.checkPrivateKey(privateKey)) throw new Error(`TLS key ${files.keyPath} does not belong to the certificate ${files.certPath}`);
  const clientCaCertificates = ca && countCaCertificates(ca, files.clientCaPath!);
  try {
    // What setSecureContext will build from these files; it must not fail there.
    createSecureContext({ cert, key, ca });
  } catch (error) {
    throw new Error(`TLS certificate ${files.certPath}, key ${files.keyPath}: ${(error as Error).message}`);
  }
  const info: TlsCertificateInfo = { subject: leaf.subject, serialNumber: leaf.serialNumber, fingerprint256: leaf.fingerprint256, notBefore: leaf.validFrom, notAfter: leaf.validTo };
  return { cert, key, ca, info: clientCaCertificates === undefined ? info : { ...info, clientCaCertificates } };
}

/** OpenSSL skips what it cannot parse in a CA bundle, so a damaged bundle would silently refuse every client: check each block. */
function countCaCertificates(bundle: Buffer, path: string): number {
  const text = bundle.toString("latin1");
  const blocks = [...text.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g)];
  if (blocks.length !== (text.match(/-----BEGIN /g)?.length ?? 0)) throw new Error(`TLS client CA ${path} holds an incomplete PEM block`);
  const certificates = blocks.filter((block) => block[1] === "CERTIFICATE").map((block) => block[0]);
  if (certificates.length === 0) throw new Error(`TLS client CA ${path} holds no PEM certificate`);
  certificates.forEach((block, i) => {
    try {
      new X509Certificate(block);
    } catch (error) {
      throw new Error(`TLS client CA ${path}: certificate ${i + 1} does not parse: ${(error as Error).message}`);
    }
  });
  return certificates.length;
}
