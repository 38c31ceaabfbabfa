/**
 * llama.cpp through node-llama-cpp, the benchmark's native anchor (docs/llama-cpp-anchor.md):
 * its prebuilt CPU binary (no GPU, no build), a GGUF model loaded once, and one sequence per
 * context, greedy. Flash attention stays off and the thread count is the caller's (1 in the
 * bench: more threads than free cores collapse its speed on a shared machine).
 */
import { getLlama, LlamaLogLevel, type Llama, type LlamaContext, type LlamaContextSequence, type LlamaModel, type Token } from "node-llama-cpp";

/** node-llama-cpp brands token ids; the bench holds plain numbers. */
const asTokens = (ids: readonly number[]) => [...ids] as Token[];

let shared: Promise<Llama> | undefined;

/** One Llama instance per process: the binding loads its native library once. */
function cpuLlama(): Promise<Llama> {
  shared ??= getLlama({ gpu: false, build: "never", usePrebuiltBinaries: true, progressLogs: false, logLevel: LlamaLogLevel.error });
  return shared;
}

export interface LlamaCppGreedy {
  tokens: number[];
  /** Milliseconds between tokens after the first (which comes from evaluating the prompt). */
  gaps: number[];
}

export class LlamaCppEngine {
  private constructor(
    private readonly model: LlamaModel,
    private readonly context: LlamaContext,
    readonly sequence: LlamaContextSequence,
  ) {}

  /** Loads `ggufPath` with room for `contextTokens` tokens, evaluated on `threads` threads. */
  static async load(ggufPath: string, contextTokens: number, threads: number): Promise<LlamaCppEngine> {
    const llama = await cpuLlama();
    const model = await llama.loadModel({ modelPath: ggufPath, gpuLayers: 0 });
    const context = await model.createContext({ contextSize: contextTokens, batchSize: 512, threads: { ideal: threads, min: threads }, flashAttention: false, sequences: 1 });
    return new LlamaCppEngine(model, context, context.getSequence());
  }

  /** Tokens the sequence holds. */
  get cached(): number {
    return this.sequence.nextTokenIndex;
  }

  /** Feeds `tokens` to the sequence without generating. */
  async prefill(tokens: readonly number[]): Promise<void> {
    await this.sequence.evaluateWithoutGeneratingNewTokens(asTokens(tokens));
  }

  /**
   * Feeds `tokens`, then generates `count` greedy tokens; each generated token is fed back before
   * the next is chosen, so `count` tokens cost `count - 1` decode steps after the prompt. EOS does
   * not end it (kvwarden's side ignores EOS too).
   */
  async greedy(tokens: readonly number[], count: number): Promise<LlamaCppGreedy> {
    const generated: number[] = [];
    const gaps: number[] = [];
    let last = performance.now();
    for await (const token of this.sequence.evaluate(asTokens(tokens), { temperature: 0, yieldEogToken: true })) {
      const now = performance.now();
      gaps.push(now - last);
      last = now;
      generated.push(token);
      if (generated.length === count) break;
    }
    return { tokens: generated, gaps: gaps.slice(1) };
  }

  /** Greedy tokens with the probability llama.cpp gives each (its top-1, as the choice is greedy). */
  async greedyWithProbabilities(tokens: readonly number[], count: number): Promise<{ tokens: number[]; probabilities: number[] }> {
    const generated: number[] = [];
    const probabilities: number[] = [];
    for await (const output of this.sequence.evaluateWithMetadata(asTokens(tokens), { probabilities: true }, { temperature: 0, yieldEogToken: true })) {
      generated.push(output.token);
      probabilities.push(output.probabilities.get(output.token) ?? NaN);
      if (generated.length === count) break;
    }
    return { tokens: generated, probabilities };
  }

  async clear(): Promise<void> {
    await this.sequence.clearHistory();
  }

  async release(): Promise<void> {
    await this.context.dispose();
    await this.model.dispose();
  }
}
