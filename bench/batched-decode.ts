/**
 * Target 3 of the performance issue: aggregate decode throughput of N
 * concurrent streams (continuous batching) against one stream, in process.
 */
import type { Engine } from "../src/engine/engine.js";

const GREEDY = { temperature: 0, topK: 0, topP: 0, seed: 0n };

export interface BatchedDecodeResult {
  streams: number;
  tokensPerStream: number;
  /** Tokens per second, all streams together. */
  tokensPerSecond: number;
  /** Each stream's tokens, to check them against the same stream decoded alone. */
  generated: number[][];
}

/**
 * Prefills `streams` sequences, stream i with BOS then token 300 + firstStream + i (so no two
 * generate alike), and decodes `tokens` greedy tokens on each, all at once.
 */
export async function decodeConcurrently(engine: Engine, streams: number, tokens: number, tag: string, firstStream = 0): Promise<BatchedDecodeResult> {
  const ids = Array.from({ length: streams }, (_, i) => `batched-${tag}-${i}`);
  const { bosId } = engine.model.tokenizer;
  await Promise.all(ids.map((sequenceId, i) => engine.prefill({ sequenceId, tokenIds: [bosId, 300 + firstStream + i] })));
  const generated = ids.map(() => [] as number[]);
  const start = performance.now();
  await Promise.all(
    ids.map(async (sequenceId, i) => {
      for await (const token of engine.decode({ sequenceId, maxNewTokens: tokens, sampling: GREEDY, stopTokenIds: [], ignoreEos: true })) {
        generated[i].push(token.tokenId);
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  await Promise.all(ids.map((sequenceId) => engine.release(sequenceId)));
  return { streams, tokensPerStream: tokens, tokensPerSecond: (streams * tokens) / seconds, generated };
}
