import { status, type ServiceError } from "@grpc/grpc-js";
import { DecodeRequest, type KvCacheClient, type DecodeResponse } from "../../../src/gen/kvwarden/v1/kvwarden.js";
import { call as unary } from "../../support/test-server.js";
import type { Call } from "./requests.js";

export interface CallOutcome {
  code: status;
  details: string;
  /** The reply of a unary call that succeeded. */
  response?: unknown;
  /** Decode messages received. */
  messages: DecodeResponse[];
}

/** Runs one structured call; a Decode with `cancelAfter` is cancelled by the client after that many tokens. */
export async function runCall(client: KvCacheClient, c: Call): Promise<CallOutcome> {
  const messages: DecodeResponse[] = [];
  try {
    if (c.method === "decode") {
      const stream = client.decode(DecodeRequest.fromPartial(c.request));
      for await (const message of stream) {
        messages.push(message as DecodeResponse);
        if (messages.length === c.cancelAfter) stream.cancel();
      }
      return { code: status.OK, details: "", messages };
    }
    const method = { prefill: client.prefill, evict: client.evict, stats: client.stats, release: client.release, fork: client.fork }[c.method];
    const response = await unary(client, method as typeof client.stats, c.request as object);
    return { code: status.OK, details: "", response, messages };
  } catch (error) {
    const { code, details } = error as ServiceError;
    return { code, details, messages };
  }
}
