import type { ChannelOptions } from "@grpc/grpc-js";

/** How long the server keeps connections that do nothing useful. */
export interface ConnectionLimits {
  /** A connection with no call for this long is closed (GOAWAY; clients reconnect on their next call), as is one that never sends a request, or not even the HTTP/2 preface. */
  idleMs: number;
  /** The server pings a connection after this long without a ping... */
  keepaliveMs: number;
  /** ...and closes it if the ping is not answered within this: a peer that vanished (half-open TCP) no longer holds a Decode stream or its memory. */
  keepaliveTimeoutMs: number;
}

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = { idleMs: 300_000, keepaliveMs: 60_000, keepaliveTimeoutMs: 20_000 };

/** The grpc-js server options for `limits`. (A TLS handshake has Node's own limit of 120 s.) */
export function connectionOptions(limits: ConnectionLimits): ChannelOptions {
  return {
    "grpc.max_connection_idle_ms": limits.idleMs,
    "grpc.keepalive_time_ms": limits.keepaliveMs,
    "grpc.keepalive_timeout_ms": limits.keepaliveTimeoutMs,
  };
}
