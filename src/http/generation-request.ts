import type { Engine } from "../engine/engine.js";
import { EvictionSpec } from "../gen/kvwarden/v1/kvwarden.js";
import type { GenerationRequest } from "./generation.js";
import { HttpError, InvalidField } from "./openai-error.js";
import type { PromptInput } from "./prompt-input.js";

/** OpenAI's default for completions' max_tokens. */
const COMPLETION_MAX_TOKENS = 16;

/** The fields both endpoints share, after schema validation (request-schemas.ts). */
export interface CommonBody {
  model: string;
  max_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  seed?: number | null;
  stop?: string | string[] | null;
  n?: number | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
  user?: string;
  kv_eviction?: Record<string, unknown>;
  kv_session?: string;
}

export interface CompletionBody extends CommonBody {
  prompt: string | number[] | string[];
  logprobs?: number | null;
}

export interface ChatCompletionBody extends CommonBody {
  messages: { role: string; content: string | { type: "text"; text: string }[] }[];
  max_completion_tokens?: number | null;
  logprobs?: boolean | null;
  top_logprobs?: number | null;
}

/** How a request wants its answer, besides what the engine runs. */
export interface Delivery {
  stream: boolean;
  includeUsage: boolean;
}

export function completionRequestOf(body: CompletionBody, engine: Engine, sessionHeader: string | undefined): GenerationRequest {
  const prompt: PromptInput = typeof body.prompt === "string" ? { text: body.prompt } : typeof body.prompt[0] === "number" ? { tokenIds: body.prompt as number[] } : { text: body.prompt[0] as string };
  const logprobs = body.logprobs ?? undefined;
  return { ...commonOf(body, engine, sessionHeader, body.max_tokens ?? COMPLETION_MAX_TOKENS), prompt, topLogprobs: logprobs };
}

export function chatRequestOf(body: ChatCompletionBody, engine: Engine, sessionHeader: string | undefined): GenerationRequest {
  const messages = body.messages.map(({ role, content }) => ({ role, content: typeof content === "string" ? content : content.map((part) => part.text).join("") }));
  if (body.top_logprobs != null && !body.logprobs) throw new InvalidField("top_logprobs", "top_logprobs needs logprobs: true");
  const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? untilContext(engine);
  return { ...commonOf(body, engine, sessionHeader, maxTokens), prompt: { messages }, topLogprobs: body.logprobs ? (body.top_logprobs ?? 0) : undefined };
}

export function deliveryOf(body: CommonBody): Delivery {
  if (body.stream_options && !body.stream) throw new InvalidField("stream_options", "stream_options is only allowed with stream: true");
  return { stream: body.stream === true, includeUsage: body.stream_options?.include_usage === true };
}

/** Chat has no max_tokens default in OpenAI: generation runs to a stop token or the context (or the request-token quota). */
function untilContext(engine: Engine): number {
  const quota = engine.options.tenantQuota?.requestTokens;
  const context = engine.model.config.contextLength;
  return quota ? Math.min(quota, context) : context;
}

function commonOf(body: CommonBody, engine: Engine, sessionHeader: string | undefined, maxTokens: number): Omit<GenerationRequest, "prompt" | "topLogprobs"> {
  const model = engine.model.config.name;
  if (body.model !== model) throw new HttpError(404, "invalid_request_error", `the model '${body.model}' does not exist; this server serves '${model}'`, "model", "model_not_found");
  if (sessionHeader !== undefined && body.kv_session !== undefined && sessionHeader !== body.kv_session) {
    throw new InvalidField("kv_session", "kv_session and the X-KV-Session header name different sessions");
  }
  const stop = body.stop == null ? [] : typeof body.stop === "string" ? [body.stop] : body.stop;
  return {
    maxTokens,
    temperature: body.temperature ?? 1,
    topP: body.top_p ?? 1,
    seed: body.seed ?? undefined,
    stop,
    n: body.n ?? 1,
    eviction: body.kv_eviction && evictionOf(body.kv_eviction),
    session: body.kv_session ?? sessionHeader,
  };
}

/** kv_eviction: the gRPC EvictionSpec in its JSON form (snake_case or camelCase field names). */
function evictionOf(json: Record<string, unknown>): EvictionSpec {
  try {
    return EvictionSpec.fromJSON(json);
  } catch (error) {
    throw new InvalidField("kv_eviction", `kv_eviction is not a valid EvictionSpec: ${(error as Error).message}`);
  }
}
