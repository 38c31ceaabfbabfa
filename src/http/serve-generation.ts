import { randomUUID } from "node:crypto";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { Engine } from "../engine/engine.js";
import type { RpcScope } from "../server/middleware/server-call.js";
import { Generation, type ChoiceFinish, type GenerationRequest, type TokenScore } from "./generation.js";
import { deliveryOf, type CommonBody, type Delivery } from "./generation-request.js";
import { surfaceCallOf } from "./http-call.js";
import { InvalidField, openAiErrorOf } from "./openai-error.js";
import { usageOf, type ResponseShape } from "./response-shape.js";
import type { RouteContext } from "./route-context.js";
import { ServerSentEvents } from "./server-sent-events.js";
import { throwIfInvalid } from "./validation-failure.js";

/** The header that names a KV session, as the kv_session body field does. */
const SESSION_HEADER = "x-kv-session";

type RequestOf<Body> = (body: Body, engine: Engine, sessionHeader: string | undefined) => GenerationRequest;

interface Head {
  id: string;
  created: number;
  model: string;
}

/**
 * Answers a completions or chat completions request: validated after
 * authentication, run as one call of the RPC runtime (span, metrics, log
 * line), answered whole or as server-sent events. A failure before the
 * stream starts is an HTTP error; after, an error event ends the stream.
 */
export async function serveGeneration<Body extends CommonBody>(
  context: RouteContext,
  request: FastifyRequest,
  reply: FastifyReply,
  shape: ResponseShape,
  requestOf: RequestOf<Body>,
): Promise<void> {
  const events = new ServerSentEvents(reply.raw);
  try {
    const whole = await context.runtime.invoke(shape.method, "work", surfaceCallOf(request, reply), request.body as Body, async (body, scope) => {
      throwIfInvalid(request);
      const engine = context.engine();
      const delivery = deliveryOf(body);
      const generationRequest = requestOf(body, engine, sessionHeaderOf(request));
      if (body.user) scope.annotate({ "user.id": body.user });
      const generation = await Generation.start(engine, generationRequest, scope, context.sessions);
      const head = { id: `${shape.idPrefix}-${randomUUID()}`, created: Math.floor(Date.now() / 1000), model: engine.model.config.name };
      try {
        if (!delivery.stream) return await wholeReply(generation, generationRequest, shape, head);
        await streamReply(generation, generationRequest, delivery, shape, head, events, scope, () => reply.hijack());
        return undefined;
      } finally {
        await generation.close();
      }
    });
    if (whole) await reply.code(200).send(whole);
  } catch (error) {
    const failure = openAiErrorOf(error);
    if (reply.raw.headersSent) events.fail(failure.body);
    else await reply.code(failure.statusCode).headers(failure.headers).send(failure.body);
  }
}

async function wholeReply(generation: Generation, request: GenerationRequest, shape: ResponseShape, head: Head): Promise<unknown> {
  const choices = Array.from({ length: request.n }, () => ({ text: "", logprobs: [] as TokenScore[], finishReason: "length" as ChoiceFinish }));
  for await (const piece of generation.pieces()) {
    const choice = choices[piece.index];
    choice.text += piece.text;
    choice.logprobs.push(...piece.logprobs);
    if (piece.finishReason) choice.finishReason = piece.finishReason;
  }
  const withLogprobs = request.topLogprobs !== undefined;
  return {
    ...head,
    object: shape.object,
    choices: choices.map((choice, index) => shape.choice(index, choice.text, withLogprobs ? choice.logprobs : undefined, choice.finishReason)),
    usage: usageOf(generation.usage),
    ...(generation.eviction ? { kv_eviction: generation.eviction } : {}),
  };
}

/** `takeOver` hands the response from Fastify to the event stream, once an HTTP error can no longer be sent. */
async function streamReply(
  generation: Generation,
  request: GenerationRequest,
  delivery: Delivery,
  shape: ResponseShape,
  head: Head,
  events: ServerSentEvents,
  scope: RpcScope,
  takeOver: () => void,
): Promise<void> {
  // The engine produces no token while the client's buffer is full.
  scope.backpressure = () => events.backpressure();
  const pieces = generation.pieces();
  // Refusals that come with the first token (a decode the engine will not start) are still an HTTP status.
  const first = await pieces.next();
  takeOver();
  events.open();
  const usage = delivery.includeUsage ? { usage: null } : {};
  const started = new Set<number>();
  const withLogprobs = request.topLogprobs !== undefined;
  for await (const piece of first.done ? [] : prepend(first.value, pieces)) {
    const choices = shape.chunkChoices(piece, !started.has(piece.index), withLogprobs);
    started.add(piece.index);
    for (const choice of choices) events.send({ ...head, object: shape.chunkObject, choices: [choice], ...usage });
  }
  if (delivery.includeUsage) events.send({ ...head, object: shape.chunkObject, choices: [], usage: usageOf(generation.usage) });
  events.done();
}

async function* prepend<T>(head: T, rest: AsyncGenerator<T>): AsyncGenerator<T> {
  yield head;
  yield* rest;
}

function sessionHeaderOf(request: FastifyRequest): string | undefined {
  const value = request.headers[SESSION_HEADER];
  if (value === undefined) return undefined;
  if (Array.isArray(value)) throw new InvalidField(SESSION_HEADER, "send one X-KV-Session header");
  if (value.length === 0 || value.length > 200) throw new InvalidField(SESSION_HEADER, "X-KV-Session must be 1 to 200 characters");
  return value;
}
