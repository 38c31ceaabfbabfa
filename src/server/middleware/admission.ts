import type { ServerMiddleware } from "./server-call.js";

/**
 * Lets a call that starts work (admission "work") in only when `admit`
 * does not throw (Unavailable while the model loads or the server drains);
 * calls that only read or free are always answered.
 */
export function admission(admit: () => void): ServerMiddleware {
  return async (call, next) => {
    if (call.admission === "work") admit();
    return next();
  };
}
