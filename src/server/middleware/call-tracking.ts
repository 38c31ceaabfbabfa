import type { CallTracker } from "../call-tracker.js";
import { Unavailable } from "../status.js";
import type { ServerCall, ServerMiddleware } from "./server-call.js";

/**
 * Registers the call with `tracker` while it runs, so that shutdown can wait
 * for it and then cancel it; a call cut short by shutdown fails with UNAVAILABLE
 * (clients may retry elsewhere), whatever its handler made of the abort.
 */
export function callTracking(tracker: CallTracker): ServerMiddleware {
  return async <T>(call: ServerCall, next: () => Promise<T>): Promise<T> => {
    const untrack = tracker.add(call.abort);
    const { signal } = call.abort;
    try {
      let result: T;
      try {
        result = await next();
      } catch (error) {
        throw signal.reason instanceof Unavailable ? signal.reason : error;
      }
      if (signal.reason instanceof Unavailable) throw signal.reason;
      return result;
    } finally {
      untrack();
    }
  };
}
