import { EngineError } from "../../engine/engine-error.js";
import { MalformedRequest } from "../malformed-request.js";
import type { ServerMiddleware } from "./server-call.js";

/** Refuses a call whose body did not decode (lenientDecoding) with INVALID_ARGUMENT: the caller's fault, not the server's. */
export const wellFormedBody: ServerMiddleware = async (call, next) => {
  if (call.request instanceof MalformedRequest) throw new EngineError("INVALID_ARGUMENT", `the request body is not a valid message: ${call.request.reason}`);
  return next();
};
