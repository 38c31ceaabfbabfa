import type { Metadata, ServerUnaryCall } from "@grpc/grpc-js";
import { ANONYMOUS, type Caller } from "../engine/engine.js";
import type { AuthTokens } from "./auth-tokens.js";
import { Unauthenticated } from "./status.js";
import { isTenantName, TENANT_NAME_RULE } from "./tenant-name.js";

/** What authentication reads of a call. */
export type CredentialsOf = Pick<ServerUnaryCall<unknown, unknown>, "metadata" | "getAuthContext">;

export interface AuthenticatorOptions {
  /** Callers present `authorization: Bearer TOKEN`; the token names the tenant. */
  tokens?: AuthTokens;
  /** Without tokens: the tenant is the subject CN of the client certificate (mutual TLS). */
  clientCertificates?: boolean;
}

/**
 * Decides who a call comes from. With tokens, the bearer token alone decides
 * (a client certificate, if any, only admitted the connection); with client
 * certificates alone, the certificate's subject CN is the tenant; with
 * neither, everyone is the anonymous tenant.
 */
export class Authenticator {
  constructor(private readonly options: AuthenticatorOptions) {}

  get enabled(): boolean {
    return this.options.tokens !== undefined || this.options.clientCertificates === true;
  }

  /** The caller of `call`; throws Unauthenticated. */
  callerOf(call: CredentialsOf): Caller {
    const { tokens, clientCertificates } = this.options;
    if (tokens) {
      const tenant = tokens.tenantOf(bearerToken(call.metadata));
      if (tenant === undefined) throw new Unauthenticated("the bearer token is not valid");
      return { tenant };
    }
    if (clientCertificates) {
      // grpc-js only reports a certificate that the handshake verified against --tls-client-ca.
      const name = call.getAuthContext().sslPeerCertificate?.subject?.CN;
      const tenant = Array.isArray(name) ? undefined : name;
      if (tenant === undefined || !isTenantName(tenant)) {
        throw new Unauthenticated(`the client certificate's subject CN must name the tenant (${TENANT_NAME_RULE})`);
      }
      return { tenant };
    }
    return ANONYMOUS;
  }
}

function bearerToken(metadata: Metadata): string {
  const values = metadata.get("authorization");
  if (values.length === 0) throw new Unauthenticated("authentication is required: send metadata 'authorization: Bearer TOKEN'");
  const match = values.length === 1 && typeof values[0] === "string" ? /^Bearer +(\S+)$/i.exec(values[0]) : null;
  if (!match) throw new Unauthenticated("the authorization metadata must be one 'Bearer TOKEN' value");
  return match[1];
}
