import { Metadata, status, type Server } from "@grpc/grpc-js";
import type { IncomingHttpHeaders, ServerHttp2Stream } from "node:http2";
import { TLSSocket } from "node:tls";
import type { CredentialsOf } from "./authenticator.js";
import { onEachHttp2Server } from "./grpc-http2-servers.js";

/** A call grpc-js ended itself because its message was over the receive limit. */
export interface OverLimitMessage {
  /** The method's path, `/package.Service/Method`. */
  path: string;
  /** The call's metadata and connection, as a handler would have seen them. */
  credentials: CredentialsOf;
  /** grpc-js's words, naming the size and the limit. */
  details: string;
}

/** How grpc-js 1.14 words the refusal of a message over `grpc.max_receive_message_length` (as sent, or decompressed). */
const OVER_LIMIT = /^Received message (larger than max|that decompresses to a size larger than) /;

/**
 * Tells `onOverLimit` of every call that grpc-js refused with
 * RESOURCE_EXHAUSTED for a message over the receive limit. grpc-js refuses
 * it from the length prefix, before any handler runs, and tells interceptors
 * only that the call ended (onCancel, as for a client that went away), not
 * how; so the status is read where grpc-js sends it, on the HTTP/2 stream.
 */
export function observeOverLimitMessages(server: Server, onOverLimit: (message: OverLimitMessage) => void): void {
  onEachHttp2Server(server, (http2Server) => {
    http2Server.on("stream", (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
      // Taken now: a closed stream no longer knows its session.
      const socket = stream.session?.socket;
      stream.once("close", () => {
        // A refusal before any reply is a trailers-only response: the status is in the headers.
        const sent = { ...stream.sentHeaders, ...stream.sentTrailers };
        if (Number(sent["grpc-status"]) !== status.RESOURCE_EXHAUSTED) return;
        const details = decodedMessage(sent["grpc-message"]);
        if (!OVER_LIMIT.test(details)) return;
        const credentials: CredentialsOf = { metadata: Metadata.fromHttp2Headers(headers), getAuthContext: () => authContextOf(socket) };
        onOverLimit({ path: String(headers[":path"]), credentials, details });
      });
    });
  });
}

/** grpc-message is percent-encoded. */
function decodedMessage(value: unknown): string {
  try {
    return decodeURIComponent(String(value ?? ""));
  } catch {
    return "";
  }
}

/** The client certificate of a verified TLS connection, as grpc-js's getAuthContext gives it to handlers. */
function authContextOf(socket: unknown): ReturnType<CredentialsOf["getAuthContext"]> {
  if (!(socket instanceof TLSSocket) || !socket.authorized) return {};
  const certificate = socket.getPeerCertificate();
  return { transportSecurityType: "ssl", sslPeerCertificate: certificate.raw ? certificate : undefined };
}
