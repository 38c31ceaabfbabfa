import type { FastifyInstance } from "fastify";
import { answer } from "./answer.js";
import { HttpError } from "./openai-error.js";
import type { RouteContext } from "./route-context.js";

/** DELETE /v1/kv_sessions/:session ends a KV session and frees its cache (docs/http-api.md). */
export function registerSessionRoutes(app: FastifyInstance, context: RouteContext): void {
  app.delete<{ Params: { session: string } }>("/v1/kv_sessions/:session", (request, reply) =>
    answer(context, request, reply, "DeleteKvSession", async (engine, scope) => {
      const { session } = request.params;
      if (!(await context.sessions.release(engine, session, scope))) {
        throw new HttpError(404, "invalid_request_error", `there is no kv_session '${session}' (never used, deleted, or expired after --sequence-ttl)`, "kv_session", "session_not_found");
      }
      return { id: session, object: "kv_session", deleted: true };
    }),
  );
}
