import { cancelledByDeadline } from "./deadline-cancel.js";
import type { ServerMiddleware } from "./server-call.js";

/** Abort reasons of a call its client ended: by cancelling, or by letting its deadline pass. */
export const CANCELLED_BY_CLIENT = "cancelled";
export const CANCELLED_BY_DEADLINE = "deadline";

/**
 * Aborts the call's signal when its client cancels or its deadline passes,
 * so the handler stops working for a client that is gone.
 */
export const cancellation: ServerMiddleware = async (call, next) => {
  const { transport, abort } = call;
  const receivedAt = Date.now();
  const cancelled = () => abort.abort(cancelledByDeadline(transport.getDeadline(), receivedAt, Date.now()) ? CANCELLED_BY_DEADLINE : CANCELLED_BY_CLIENT);
  if (transport.cancelled) cancelled();
  else transport.on("cancelled", cancelled);
  return next();
};
