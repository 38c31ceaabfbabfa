import ort from "onnxruntime-node";
import type { ModelConfig } from "../config/model-config.js";
import type { ThreadOutput, ThreadTensor } from "./session-threads.js";

/**
 * The most arithmetic a run may take to be done on the event loop instead of on a session thread.
 * Crossing to a thread and back costs a step about 0.2 ms of the event loop's own time (posting,
 * structured clone, the reply) plus two thread wake-ups, paid again on every decode step; a
 * stories260K decode step at a few hundred cached entries takes about 0.3 ms in onnxruntime
 * (0.6 MFLOP), one at 1,000 entries 0.6 ms (1.8 MFLOP). So runs up to 2 MFLOP hold the event loop
 * for at most about as long as crossing would cost them; a longer one (a prefill chunk, a long
 * sequence's decode step, any step of a larger model) goes to a thread (docs/worker-threads.md).
 */
export const INLINE_RUN_MAX_FLOPS = 2e6;

/**
 * Floating-point operations of a run of `rows` token rows (batch times tokens), each attending
 * `attended` cached entries: the projections, the classifier and attention, a multiply-add each.
 */
export function runFlops(config: ModelConfig, rows: number, attended: number): number {
  const { dim, hiddenDim, layers, heads, kvHeads, headSize, vocabSize } = config;
  const projections = dim * (heads + 2 * kvHeads) * headSize + heads * headSize * dim + 3 * dim * hiddenDim;
  const attention = 2 * heads * headSize * attended;
  return 2 * rows * (layers * (projections + attention) + dim * vocabSize);
}

/**
 * A session of the step graph on the event loop's own thread, for runs too small to be worth
 * crossing to a session thread (INLINE_RUN_MAX_FLOPS). It exists only for a model whose smallest
 * run (one token onto an empty cache) is that small, so a larger model's weights are not held a
 * second time for nothing.
 */
export class InlineSession {
  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly config: ModelConfig,
    private readonly maxFlops: number,
  ) {}

  /** A session for `config`'s graph when its smallest run is within `maxFlops`; otherwise none. */
  static async create(graph: Uint8Array | string, options: ort.InferenceSession.SessionOptions, config: ModelConfig, maxFlops: number): Promise<InlineSession | undefined> {
    if (runFlops(config, 1, 0) > maxFlops) return undefined;
    const session = typeof graph === "string" ? await ort.InferenceSession.create(graph, options) : await ort.InferenceSession.create(graph, options);
    return new InlineSession(session, config, maxFlops);
  }

  /** Whether a run of `tokens` onto a cache of `attended` entries is done here. */
  takes(tokens: number, attended: number): boolean {
    return runFlops(this.config, tokens, attended) <= this.maxFlops;
  }

  /**
   * Runs the graph on `feeds` as they are, uncopied, though onnxruntime-node runs it one event-loop
   * turn later: the caller's arrays must stay as they are till then (a sequence's own cache is, held
   * by its call).
   */
  async run(feeds: Record<string, ThreadTensor>): Promise<Record<string, ThreadOutput>> {
    const tensors: Record<string, ort.Tensor> = {};
    for (const [name, { type, data, dims }] of Object.entries(feeds)) {
      tensors[name] = new ort.Tensor(type, data.subarray(0, dims.reduce((product, n) => product * n, 1)), dims);
    }
    const results = await this.session.run(tensors);
    const outputs: Record<string, ThreadOutput> = {};
    for (const [name, tensor] of Object.entries(results)) outputs[name] = { data: tensor.data as ThreadOutput["data"], dims: tensor.dims };
    return outputs;
  }

  release(): Promise<void> {
    return this.session.release();
  }
}
