import type { Engine } from "../engine/engine.js";
import type { RpcRuntime } from "../server/rpc-runtime.js";
import type { KvSessions } from "./kv-sessions.js";

/** What every route of the HTTP front works with. */
export interface RouteContext {
  /** Throws Unavailable while the model loads. */
  engine(): Engine;
  /** The same runtime as gRPC calls': authentication, admission, spans, metrics, log lines. */
  runtime: RpcRuntime;
  sessions: KvSessions;
}
