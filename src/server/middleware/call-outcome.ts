import { status } from "@grpc/grpc-js";
import { toServiceError } from "../status.js";
import { CANCELLED_BY_CLIENT, CANCELLED_BY_DEADLINE } from "./cancellation.js";
import type { ServerCall } from "./server-call.js";

/** How a call ended, as spans, metrics and log lines record it. */
export interface CallOutcome {
  code: status;
  /** The error's bounded message; undefined when the handler succeeded. */
  details?: string;
}

/**
 * Runs `next` and tells `ended` how the call ended, then passes its result or
 * error on unchanged. A cancelled call's client is gone: what is recorded is
 * what happened to it (CANCELLED, DEADLINE_EXCEEDED), not what the handler returned.
 */
export async function observeOutcome<T>(call: ServerCall, next: () => Promise<T>, ended: (outcome: CallOutcome) => void): Promise<T> {
  let outcome: CallOutcome;
  let result: T;
  try {
    result = await next();
    outcome = { code: status.OK };
  } catch (error) {
    const serviceError = toServiceError(error);
    ended(cancelledOr(call, { code: serviceError.code!, details: serviceError.details }));
    throw error;
  }
  ended(cancelledOr(call, outcome));
  return result;
}

function cancelledOr(call: ServerCall, outcome: CallOutcome): CallOutcome {
  const reason: unknown = call.abort.signal.reason;
  if (reason === CANCELLED_BY_DEADLINE) return { ...outcome, code: status.DEADLINE_EXCEEDED };
  if (reason === CANCELLED_BY_CLIENT) return { ...outcome, code: status.CANCELLED };
  return outcome;
}
