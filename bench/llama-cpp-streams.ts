/**
 * llama.cpp's continuous batching through node-llama-cpp, as the batching bench's anchor: one context
 * holding several sequences, which the binding evaluates together in one batch per step
 * (docs/llama-cpp-anchor.md). Same prebuilt CPU binary and settings as LlamaCppEngine.
 */
import { getLlama, LlamaLogLevel, type Token } from "node-llama-cpp";

export interface StreamsResult {
  tokensPerSecond: number;
  generated: number[][];
}

/**
 * Loads `ggufPath` into one context of `prompts.length` sequences, feeds each its prompt, then times
 * `tokens` greedy tokens on every sequence at once (after an untimed first token each: the prompt's).
 */
export async function llamaCppStreams(ggufPath: string, prompts: readonly number[][], tokens: number, threads: number): Promise<StreamsResult> {
  const llama = await getLlama({ gpu: false, build: "never", usePrebuiltBinaries: true, progressLogs: false, logLevel: LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath: ggufPath, gpuLayers: 0 });
  const context = await model.createContext({
    contextSize: 256 * prompts.length,
    batchSize: 512,
    sequences: prompts.length,
    threads: { ideal: threads, min: threads },
    flashAttention: false,
  });
  try {
    const sequences = prompts.map(() => context.getSequence());
    const generated = prompts.map(() => [] as number[]);
    let started = 0;
    const ready: Promise<void>[] = [];
    let allReady!: () => void;
    const gate = new Promise<void>((resolve) => (allReady = resolve));
    await Promise.all(
      sequences.map(async (sequence, i) => {
        let first!: () => void;
        ready.push(new Promise<void>((resolve) => (first = resolve)));
        for await (const token of sequence.evaluate(prompts[i] as Token[], { temperature: 0, yieldEogToken: true })) {
          generated[i].push(token);
          if (generated[i].length === 1) {
            first();
            await gate;
          }
          if (generated[i].length === tokens + 1) break;
        }
      }).concat(
        (async () => {
          await Promise.all(ready);
          started = performance.now();
          allReady();
        })(),
      ),
    );
    const seconds = (performance.now() - started) / 1000;
    return { tokensPerSecond: (prompts.length * tokens) / seconds, generated };
  } finally {
    await context.dispose();
    await model.dispose();
  }
}
