import Fastify, { type FastifyError, type FastifyInstance } from "fastify";
import type { Engine } from "../engine/engine.js";
import type { RpcRuntime } from "../server/rpc-runtime.js";
import { listenError, parseHostPort } from "../telemetry/host-port.js";
import { registerGenerationRoutes } from "./generation-routes.js";
import { KvSessions } from "./kv-sessions.js";
import { registerModelRoutes } from "./model-routes.js";
import { HttpError, openAiErrorOf } from "./openai-error.js";
import { registerSessionRoutes } from "./session-routes.js";

export interface HttpFrontOptions {
  /** Throws Unavailable while the model loads. */
  engine(): Engine;
  runtime: RpcRuntime;
  /** Larger request bodies are refused unread (413). */
  bodyLimit: number;
}

/**
 * The OpenAI-compatible HTTP API (docs/http-api.md): Fastify routes over the
 * same engine, authentication, spans and metrics as the gRPC service.
 */
export class HttpFront {
  private readonly app: FastifyInstance;

  constructor(options: HttpFrontOptions) {
    this.app = Fastify({
      bodyLimit: options.bodyLimit,
      // Types are checked as sent: "5" is not a number.
      ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
      // Running streams end when the server drains; idle keep-alive connections do not hold it up.
      forceCloseConnections: "idle",
      // A request on a kept-alive connection while draining gets the runtime's 503, in OpenAI's error form.
      return503OnClosing: false,
    });
    const context = { engine: options.engine, runtime: options.runtime, sessions: new KvSessions() };
    registerGenerationRoutes(this.app, context);
    registerModelRoutes(this.app, context);
    registerSessionRoutes(this.app, context);
    this.app.setNotFoundHandler((request, reply) => {
      const failure = openAiErrorOf(new HttpError(404, "invalid_request_error", `there is no ${request.method} ${request.url.split("?")[0]}: see docs/http-api.md for the endpoints`, null, "unknown_url"));
      return reply.code(failure.statusCode).send(failure.body);
    });
    // Bodies that cannot be read (not JSON, too large, wrong content type) are refused before any route runs.
    this.app.setErrorHandler((error: FastifyError, _request, reply) => {
      const statusCode = error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
      const type = statusCode === 500 ? "server_error" : "invalid_request_error";
      return reply.code(statusCode).send({ error: { message: error.message, type, param: null, code: error.code?.toLowerCase() ?? null } });
    });
  }

  /** Binds HOST:PORT; resolves with the bound port. */
  async listen(address: string): Promise<number> {
    const { host, port } = parseHostPort(address);
    try {
      await this.app.listen({ host: host ?? "::", port });
    } catch (error) {
      throw listenError(address, error as Error);
    }
    const bound = this.app.server.address();
    return typeof bound === "object" && bound ? bound.port : port;
  }

  /** Stops taking requests; resolves once running ones have ended. */
  close(): Promise<void> {
    return this.app.close();
  }
}
