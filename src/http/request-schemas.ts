/**
 * JSON schemas of the request bodies (OpenAI's fields this server serves, and
 * the kv_* extensions of docs/http-api.md). Fastify compiles them with Ajv; a
 * body that breaks one is refused with 400 naming the field. Fields OpenAI
 * defines that are not listed here are refused rather than silently ignored.
 */

/** A session name: it becomes part of a sequence id (256 bytes at most, see kv-cache-requests.ts). */
const SESSION = { type: "string", minLength: 1, maxLength: 200 } as const;
const STOP = {
  anyOf: [
    { type: "string", minLength: 1 },
    { type: "array", items: { type: "string", minLength: 1 }, maxItems: 4 },
    { type: "null" },
  ],
} as const;

/** Fields completions and chat completions share. */
const COMMON = {
  model: { type: "string", minLength: 1 },
  max_tokens: { type: ["integer", "null"], minimum: 1 },
  temperature: { type: ["number", "null"], minimum: 0, maximum: 2 },
  top_p: { type: ["number", "null"], minimum: 0, maximum: 1 },
  seed: { type: ["integer", "null"], minimum: 0 },
  stop: STOP,
  n: { type: ["integer", "null"], minimum: 1, maximum: 8 },
  stream: { type: ["boolean", "null"] },
  stream_options: {
    type: ["object", "null"],
    properties: { include_usage: { type: "boolean" } },
    additionalProperties: false,
  },
  user: { type: "string", maxLength: 256 },
  kv_eviction: { type: "object", required: ["policy"], properties: { policy: { type: "string", minLength: 1 } } },
  kv_session: SESSION,
} as const;

export const COMPLETION_BODY = {
  type: "object",
  required: ["model", "prompt"],
  properties: {
    ...COMMON,
    prompt: {
      anyOf: [
        { type: "string", minLength: 1 },
        { type: "array", items: { type: "integer", minimum: 0 }, minItems: 1 },
        { type: "array", items: { type: "string", minLength: 1 }, minItems: 1, maxItems: 1 },
      ],
    },
    logprobs: { type: ["integer", "null"], minimum: 0, maximum: 5 },
    // The prompt is not echoed back: `echo: true` gets a 400 naming the field (docs/http-api.md).
    echo: { type: "boolean", const: false },
  },
  additionalProperties: false,
} as const;

export const CHAT_COMPLETION_BODY = {
  type: "object",
  required: ["model", "messages"],
  properties: {
    ...COMMON,
    messages: {
      type: "array",
      minItems: 1,
      items: {
        type: "object",
        required: ["role", "content"],
        properties: {
          role: { type: "string", enum: ["system", "developer", "user", "assistant"] },
          content: {
            anyOf: [
              { type: "string" },
              { type: "array", items: { type: "object", required: ["type", "text"], properties: { type: { const: "text" }, text: { type: "string" } } } },
            ],
          },
          name: { type: "string" },
        },
      },
    },
    max_completion_tokens: { type: ["integer", "null"], minimum: 1 },
    logprobs: { type: ["boolean", "null"] },
    top_logprobs: { type: ["integer", "null"], minimum: 0, maximum: 20 },
  },
  additionalProperties: false,
} as const;
