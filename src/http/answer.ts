import type { FastifyReply, FastifyRequest } from "fastify";
import type { Engine } from "../engine/engine.js";
import type { RpcScope } from "../server/middleware/server-call.js";
import { surfaceCallOf } from "./http-call.js";
import { openAiErrorOf } from "./openai-error.js";
import type { RouteContext } from "./route-context.js";

/**
 * Runs a request that starts no generation (always admitted, like gRPC's
 * Stats and Release) as one call of the runtime, and sends its JSON or
 * OpenAI's error object.
 */
export async function answer(
  context: RouteContext,
  request: FastifyRequest,
  reply: FastifyReply,
  method: string,
  read: (engine: Engine, scope: RpcScope) => unknown,
): Promise<void> {
  try {
    const body = await context.runtime.invoke(method, "always", surfaceCallOf(request, reply), undefined, (_, scope) => read(context.engine(), scope));
    await reply.code(200).send(body);
  } catch (error) {
    const failure = openAiErrorOf(error);
    await reply.code(failure.statusCode).headers(failure.headers).send(failure.body);
  }
}
