import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { isTenantName, TENANT_NAME_RULE } from "./tenant-name.js";

/** RFC 6750 token characters; at least 16 of them, so a token cannot be guessed by trying. */
const TOKEN = /^[A-Za-z0-9\-._~+/]{16,}=*$/;

/** Tokens are kept as digests: a heap dump or a timing probe of the lookup reveals no token. */
function digest(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

/**
 * Parses an auth tokens file: one `TOKEN TENANT` pair per line; blank lines
 * and lines starting with # are ignored. A tenant may have several tokens
 * (rotation). Errors name the line, never the token.
 */
export function parseAuthTokens(text: string, source: string): Map<string, string> {
  const tenants = new Map<string, string>();
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const where = `${source}:${index + 1}`;
    const fields = line.split(/\s+/);
    if (fields.length !== 2) throw new Error(`${where}: expected "TOKEN TENANT", got ${fields.length} fields`);
    const [token, tenant] = fields;
    if (!TOKEN.test(token)) throw new Error(`${where}: the token must be at least 16 characters of A-Z a-z 0-9 - . _ ~ + / (and trailing =)`);
    if (!isTenantName(tenant)) throw new Error(`${where}: tenant '${tenant}' is not a valid name (${TENANT_NAME_RULE})`);
    const key = digest(token);
    if (tenants.has(key)) throw new Error(`${where}: this token is already listed`);
    tenants.set(key, tenant);
  });
  if (tenants.size === 0) throw new Error(`${source} lists no tokens: every call would be refused`);
  return tenants;
}

/** The bearer tokens callers may present, read from a file and re-read on demand (SIGHUP). */
export class AuthTokens {
  private tenants: Map<string, string>;

  constructor(readonly path: string) {
    this.tenants = parseAuthTokens(readFileSync(path, "utf8"), path);
  }

  /** Re-reads the file; on any error the tokens in force stay as they were. Returns the counts now in force. */
  reload(): { tokens: number; tenants: number } {
    this.tenants = parseAuthTokens(readFileSync(this.path, "utf8"), this.path);
    return { tokens: this.tenants.size, tenants: new Set(this.tenants.values()).size };
  }

  tenantOf(token: string): string | undefined {
    return this.tenants.get(digest(token));
  }
}
