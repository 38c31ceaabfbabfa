/**
 * Target 8 of the performance issue (issue 17, "no caller can hurt another"):
 * the decode speed of a short stream beside one with a long context, against
 * the same short stream alone, in process and in one run.
 */
import type { Engine } from "../src/engine/engine.js";

const GREEDY = { temperature: 0, topK: 0, topP: 0, seed: 0n };
const LONG_ALONE_TOKENS = 16;

export interface ShortBesideLongResult {
  /** Tokens per second of the short stream alone and beside the long one. */
  shortAlone: number;
  shortBeside: number;
  /** Tokens per second of the long stream alone (just before), and while the short one decoded beside it. */
  longAlone: number;
  longBeside: number;
  /** The 90th percentile of the time between two of the short stream's tokens, alone and beside, in ms. */
  shortGapP90Alone: number;
  shortGapP90Beside: number;
  /** The short stream generated the same tokens beside the long one as alone. */
  sameTokens: boolean;
}

async function decodeTimed(engine: Engine, sequenceId: string, tokens: number): Promise<{ rate: number; gapP90: number; generated: number[] }> {
  const generated: number[] = [];
  const start = performance.now();
  const gaps: number[] = [];
  let last = start;
  for await (const token of engine.decode({ sequenceId, maxNewTokens: tokens, sampling: GREEDY, stopTokenIds: [], ignoreEos: true })) {
    generated.push(token.tokenId);
    const now = performance.now();
    gaps.push(now - last);
    last = now;
  }
  gaps.sort((a, b) => a - b);
  return { rate: tokens / ((last - start) / 1000), gapP90: gaps[Math.floor(0.9 * (gaps.length - 1))], generated };
}

/**
 * The long stream (prefilled beforehand as `longId`) decodes greedily, without end, while a short
 * stream (BOS and one token) decodes `shortTokens` tokens alone, then beside it.
 */
export async function shortBesideLong(engine: Engine, longId: string, shortTokens: number, tag: string): Promise<ShortBesideLongResult> {
  const { bosId } = engine.model.tokenizer;
  const shortId = (phase: string) => `short-${tag}-${phase}`;
  await engine.prefill({ sequenceId: shortId("alone"), tokenIds: [bosId, 300] });
  const alone = await decodeTimed(engine, shortId("alone"), shortTokens);
  await engine.release(shortId("alone"));

  await engine.prefill({ sequenceId: shortId("beside"), tokenIds: [bosId, 300] });
  const stop = new AbortController();
  let longTokens = 0;
  // The long stream's speed alone: LONG_ALONE_TOKENS after its first two.
  const marks: number[] = [];
  let aloneDone = (): void => undefined;
  const longAloneDone = new Promise<void>((resolve) => (aloneDone = resolve));
  const long = (async () => {
    for await (const _ of engine.decode({ sequenceId: longId, maxNewTokens: 1_000_000, sampling: GREEDY, stopTokenIds: [], ignoreEos: true }, { signal: stop.signal })) {
      longTokens++;
      if (longTokens === 2 || longTokens === 2 + LONG_ALONE_TOKENS) marks.push(performance.now());
      if (longTokens === 2 + LONG_ALONE_TOKENS) aloneDone();
    }
  })().catch((error: unknown) => {
    // Stopped between two steps it ends quietly, during one with CANCELLED: either way as asked.
    if (!stop.signal.aborted) throw error;
  });
  await longAloneDone;
  const longAlone = LONG_ALONE_TOKENS / ((marks[1] - marks[0]) / 1000);
  const longBefore = longTokens;
  const start = performance.now();
  const beside = await decodeTimed(engine, shortId("beside"), shortTokens);
  const seconds = (performance.now() - start) / 1000;
  const longBeside = (longTokens - longBefore) / seconds;
  stop.abort();
  await long;
  await engine.release(shortId("beside"));
  const sameTokens = beside.generated.every((token, i) => token === alone.generated[i]);
  return { shortAlone: alone.rate, shortBeside: beside.rate, shortGapP90Alone: alone.gapP90, shortGapP90Beside: beside.gapP90, longAlone, longBeside, sameTokens };
}
