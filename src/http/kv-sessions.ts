import type { Engine, PrefillOutcome } from "../engine/engine.js";
import { EngineError } from "../engine/engine-error.js";
import type { EvictionSpec as PolicySpec } from "../policies/policy.js";
import { sequenceIdOf } from "../server/kv-cache-requests.js";
import type { RpcScope } from "../server/middleware/server-call.js";
import { HttpError } from "./openai-error.js";
import type { PromptInput } from "./prompt-input.js";

/** Sessions whose prompt boundary is remembered; beyond this the oldest are forgotten (then only exact extensions are accepted). */
const REMEMBERED_SESSIONS = 100_000;

export interface SessionPrefill {
  outcome: PrefillOutcome;
  /** Prompt tokens of the request (reused ones included). */
  promptTokens: number;
  /** Of those, how many the session already held and were not fed again. */
  cachedTokens: number;
}

/**
 * KV sessions of the HTTP front (docs/http-api.md): a session is a sequence
 * kept between requests, named `kv-session:NAME` in its tenant. A request
 * must repeat everything the session was prompted with so far; what the
 * session generated last may be re-tokenized differently or dropped (the
 * client keeps only the text it wants), so the sequence is truncated to the
 * common prefix and only the rest is fed.
 */
export class KvSessions {
  /** By tenant and session, the prompt length of the session's last request. */
  private readonly promptEnds = new Map<string, number>();

  sequenceIdOf(session: string): string {
    return sequenceIdOf({ sequenceId: `kv-session:${session}` }, "kv_session");
  }

  /** Feeds `prompt` into the session, creating it on first use; refuses (409) a prompt that does not extend it. */
  async prefill(engine: Engine, session: string, prompt: PromptInput, eviction: PolicySpec | undefined, scope: RpcScope): Promise<SessionPrefill> {
    const sequenceId = this.sequenceIdOf(session);
    const key = `${scope.caller.tenant}\u0000${session}`;
    const held = heldTokens(engine, sequenceId, scope);
    if (held === undefined) {
      const outcome = await engine.prefill({ sequenceId, ...prompt, eviction }, { caller: scope.caller, signal: scope.signal });
      this.remember(key, outcome.promptTokens);
      return { outcome, promptTokens: outcome.promptTokens, cachedTokens: 0 };
    }
    const fresh = await promptTokenIds(engine, prompt, scope.signal);
    const common = commonPrefixLength(held, fresh);
    const promptEnd = this.promptEnds.get(key) ?? held.length;
    if (common < promptEnd) {
      throw new HttpError(
        409,
        "conflict_error",
        `the prompt does not extend kv_session '${session}': it differs at token ${common} from the ${promptEnd} tokens the session was prompted with; send the whole conversation so far, or start a new session`,
        "kv_session",
        "session_mismatch",
      );
    }
    // At least one token is fed, so that the reply is sampled from fresh logits.
    const keep = Math.min(common, fresh.length - 1);
    if (keep < held.length) await engine.truncate(sequenceId, keep, { caller: scope.caller, signal: scope.signal });
    const outcome = await engine.prefill({ sequenceId, tokenIds: fresh.slice(keep), eviction }, { caller: scope.caller, signal: scope.signal });
    this.remember(key, fresh.length);
    return { outcome, promptTokens: fresh.length, cachedTokens: keep };
  }

  /** Ends a session; false when the tenant has no such session. */
  async release(engine: Engine, session: string, scope: RpcScope): Promise<boolean> {
    this.promptEnds.delete(`${scope.caller.tenant}\u0000${session}`);
    const { found } = await engine.release(this.sequenceIdOf(session), { caller: scope.caller });
    return found;
  }

  private remember(key: string, promptEnd: number): void {
    this.promptEnds.delete(key);
    this.promptEnds.set(key, promptEnd);
    if (this.promptEnds.size > REMEMBERED_SESSIONS) this.promptEnds.delete(this.promptEnds.keys().next().value!);
  }
}

/** The session's tokens, or undefined when it does not exist (never made, released or expired). */
function heldTokens(engine: Engine, sequenceId: string, scope: RpcScope): number[] | undefined {
  try {
    return engine.stats({ sequenceId, includeTokenIds: true }, { caller: scope.caller }).sequences[0].tokenIds;
  } catch (error) {
    if (error instanceof EngineError && error.code === "NOT_FOUND") return undefined;
    throw error;
  }
}

/** The token ids the engine would feed for `prompt` at the start of a sequence (BOS as it adds it). */
async function promptTokenIds(engine: Engine, prompt: PromptInput, signal: AbortSignal): Promise<number[]> {
  const { tokenizer } = engine.model;
  if ("tokenIds" in prompt) return prompt.tokenIds;
  if ("text" in prompt) return [...(tokenizer.addsBos ? [tokenizer.bosId] : []), ...(await tokenizer.encodeInSlices(prompt.text, signal))];
  if (!tokenizer.renderChat) throw new EngineError("INVALID_ARGUMENT", "messages need a chat template, and this model's tokenizer has none");
  return tokenizer.encodeInSlices(tokenizer.renderChat(prompt.messages), signal);
}

function commonPrefixLength(a: readonly number[], b: readonly number[]): number {
  let length = 0;
  while (length < a.length && length < b.length && a[length] === b[length]) length++;
  return length;
}
