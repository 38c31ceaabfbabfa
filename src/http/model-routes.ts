import type { FastifyInstance } from "fastify";
import type { Engine } from "../engine/engine.js";
import { answer } from "./answer.js";
import { HttpError } from "./openai-error.js";
import type { RouteContext } from "./route-context.js";

/** When the server started: OpenAI's model objects carry a creation time. */
const STARTED = Math.floor(Date.now() / 1000);

/** GET /v1/models (the one model served) and GET /v1/models/:model. */
export function registerModelRoutes(app: FastifyInstance, context: RouteContext): void {
  app.get("/v1/models", (request, reply) =>
    answer(context, request, reply, "ListModels", (engine) => ({ object: "list", data: [modelObject(engine)] })),
  );
  app.get<{ Params: { model: string } }>("/v1/models/:model", (request, reply) =>
    answer(context, request, reply, "RetrieveModel", (engine) => {
      const { model } = request.params;
      if (model !== engine.model.config.name) throw new HttpError(404, "invalid_request_error", `the model '${model}' does not exist; this server serves '${engine.model.config.name}'`, "model", "model_not_found");
      return modelObject(engine);
    }),
  );
}

function modelObject(engine: Engine): unknown {
  return { id: engine.model.config.name, object: "model", created: STARTED, owned_by: "kvwarden" };
}
