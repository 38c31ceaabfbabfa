import { status, type ServiceError } from "@grpc/grpc-js";
import type { DecodeResponse, KvwardenClient } from "../../../src/client/index.js";
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
export async function runCall(client: KvwardenClient, c: Call): Promise<CallOutcome> {
  const messages: DecodeResponse[] = [];
  try {
    const response = await send(client, c, messages);
    return { code: status.OK, details: "", response, messages };
  } catch (error) {
    const { code, details } = error as ServiceError;
    return { code, details, messages };
  }
}

async function send(client: KvwardenClient, c: Call, messages: DecodeResponse[]): Promise<unknown> {
  switch (c.method) {
    case "decode": {
      const cancel = new AbortController();
      for await (const message of client.decode(withId(c.request), { signal: cancel.signal })) {
        messages.push(message);
        if (messages.length === c.cancelAfter) cancel.abort();
      }
      return undefined;
    }
    case "prefill":
      return client.prefill(withId(c.request));
    case "evict":
      return client.evict(withId(c.request));
    case "stats":
      return client.stats(c.request);
    case "release":
      return client.release(c.request.sequenceId ?? "", { requestId: c.request.requestId });
    case "fork":
      return client.fork(c.request.sequenceId ?? "", c.request.newSequenceId ?? "", { requestId: c.request.requestId });
  }
}

/** An unset sequence id is sent as the proto default (""), which the server refuses: the fuzz sends it on purpose. */
function withId<R extends { sequenceId?: string }>(request: R): R & { sequenceId: string } {
  return { ...request, sequenceId: request.sequenceId ?? "" };
}
