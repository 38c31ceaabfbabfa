import { Metadata } from "@grpc/grpc-js";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { SurfaceCall } from "../server/middleware/server-call.js";

/** Headers a call's runtime reads: the bearer token and W3C trace context. */
const CARRIED_HEADERS = ["authorization", "traceparent", "tracestate"];

/**
 * An HTTP request as the RPC runtime sees a call, so that it is
 * authenticated, traced, counted and logged as a gRPC call is. It is
 * cancelled when its client goes away before the response is complete.
 */
export function surfaceCallOf(request: FastifyRequest, reply: FastifyReply): SurfaceCall {
  const metadata = new Metadata();
  // From the raw headers: Node keeps only the first of repeated Authorization headers, and two tokens are one too many.
  const raw = request.raw.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    if (CARRIED_HEADERS.includes(name)) metadata.add(name, raw[i + 1]);
  }
  let cancelled = false;
  const listeners: (() => void)[] = [];
  reply.raw.on("close", () => {
    if (reply.raw.writableFinished) return;
    cancelled = true;
    for (const listener of listeners) listener();
  });
  return {
    metadata,
    get cancelled() {
      return cancelled;
    },
    getDeadline: () => Infinity,
    on: (_event, listener) => listeners.push(listener),
    // Plain HTTP: no peer certificate (see docs/http-api.md on TLS).
    getAuthContext: () => ({}),
  };
}
