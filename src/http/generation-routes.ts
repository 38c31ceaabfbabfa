import type { FastifyInstance } from "fastify";
import { CHAT_COMPLETION_SHAPE } from "./chat-completion-shape.js";
import { COMPLETION_SHAPE } from "./completion-shape.js";
import { chatRequestOf, completionRequestOf, type ChatCompletionBody, type CompletionBody } from "./generation-request.js";
import { CHAT_COMPLETION_BODY, COMPLETION_BODY } from "./request-schemas.js";
import type { RouteContext } from "./route-context.js";
import { serveGeneration } from "./serve-generation.js";

/** POST /v1/completions and POST /v1/chat/completions. */
export function registerGenerationRoutes(app: FastifyInstance, context: RouteContext): void {
  // attachValidation: a schema failure is reported by the handler, after authentication (see validation-failure.ts).
  app.post("/v1/completions", { schema: { body: COMPLETION_BODY }, attachValidation: true }, (request, reply) =>
    serveGeneration<CompletionBody>(context, request, reply, COMPLETION_SHAPE, completionRequestOf),
  );
  app.post("/v1/chat/completions", { schema: { body: CHAT_COMPLETION_BODY }, attachValidation: true }, (request, reply) =>
    serveGeneration<ChatCompletionBody>(context, request, reply, CHAT_COMPLETION_SHAPE, chatRequestOf),
  );
}
