import type { Authenticator } from "../authenticator.js";
import type { ServerMiddleware } from "./server-call.js";

/**
 * Sets the call's caller from its credentials, or refuses it with
 * UNAUTHENTICATED (Authenticator.callerOf throws). gRPC calls were already
 * refused on their metadata, before their message was read (auth-interceptor.ts):
 * this names the caller of those let through, and guards the HTTP front.
 */
export function authentication(authenticator: Authenticator): ServerMiddleware {
  return async (call, next) => {
    call.scope.caller = authenticator.callerOf(call.transport);
    return next();
  };
}
