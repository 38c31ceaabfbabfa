import type { Engine } from "../src/engine/engine.js";

const greedy = { temperature: 0, topK: 0, topP: 0, seed: 0n };

/**
 * One in-process greedy Decode: the milliseconds between tokens after the first (which comes from
 * the prefill's logits, so its gap times no step), and the token ids chosen.
 */
export async function timedGreedyDecode(engine: Engine, sequenceId: string, tokens: number): Promise<{ gaps: number[]; tokens: number[] }> {
  const gaps: number[] = [];
  const generated: number[] = [];
  let last = performance.now();
  for await (const token of engine.decode({ sequenceId, maxNewTokens: tokens, sampling: greedy, stopTokenIds: [], ignoreEos: true })) {
    const now = performance.now();
    gaps.push(now - last);
    last = now;
    generated.push(token.tokenId);
  }
  return { gaps: gaps.slice(1), tokens: generated };
}
