import ort from "onnxruntime-node";
import type { KvArray, KvDtype } from "../kv/layer-cache.js";
import { CausalMasks } from "./causal-masks.js";
import type { ModelConfig } from "./checkpoint.js";
import type { DecodeBatchInput, ModelRunner, PastLayer, RunnerOptions, StepInput, StepOutput } from "./model-runner.js";
import { STEP_IO } from "./llama-graph.js";

/** Runs the step graph: one call per prefill chunk, decode step or batch of decode steps. */
export class StepRunner implements ModelRunner {
  private readonly causalMasks = new CausalMasks();

  /** What the graph computes in. */
  readonly dtype = "float32";

  private constructor(
    private readonly session: ort.InferenceSession,
    readonly config: ModelConfig,
    readonly kvDtype: KvDtype,
  ) {}

  /** `graph`: the model bytes, or the path of an .onnx file whose weights lie beside it. */
  static async create(graph: Uint8Array | string, config: ModelConfig, options: RunnerOptions): Promise<StepRunner> {
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      executionProviders: [options.executionProvider],
      intraOpNumThreads: options.intraOpThreads,
      graphOptimizationLevel: "all",
      // The graph's outputs have symbolic shapes that ORT's checker cannot verify; the values are exact.
      logSeverityLevel: 3,
    };
    const session =
      typeof graph === "string" ? await ort.InferenceSession.create(graph, sessionOptions) : await ort.InferenceSession.create(graph, sessionOptions);
    return new StepRunner(session, config, options.kvDtype ?? "float32");
  }

  /** One sequence: a prefill chunk of `tokens`, or a decode step (one token). */
  run(input: StepInput): Promise<StepOutput> {
    const count = input.tokens.length;
    const positions = Array.from({ length: count }, (_, i) => input.firstPosition + i);
    return this.execute(input.tokens, positions, 1, input.past, Math.min(input.queryRows, count), Math.min(input.logitRows ?? 1, count));
  }

  /** One decode step of each of B sequences in one graph run. */
  runDecodeBatch(input: DecodeBatchInput): Promise<StepOutput> {
    return this.execute(input.tokens, input.positions, input.tokens.length, input.past, 1, 1);
  }

  async release(): Promise<void> {
    await this.session.release();
  }

  /** `tokens` and `positions` are [batch, S] row-major. */
  private async execute(
    tokens: readonly number[],
    positions: readonly number[],
    batch: number,
    past: readonly PastLayer[],
    queryRows: number,
    logitRows: number,
  ): Promise<StepOutput> {
    const { layers, kvHeads, headSize } = this.config;
    const count = tokens.length / batch;
    const feeds: Record<string, ort.Tensor> = {
      [STEP_IO.inputIds]: new ort.Tensor("int64", BigInt64Array.from(tokens, BigInt), [batch, count]),
      [STEP_IO.positionIds]: new ort.Tensor("int64", BigInt64Array.from(positions, BigInt), [batch, count]),
      [STEP_IO.causalMask]: this.causalMasks.of(count),
      [STEP_IO.queryRows]: new ort.Tensor("int64", BigInt64Array.of(BigInt(queryRows)), [1]),
      [STEP_IO.logitRows]: new ort.Tensor("int64", BigInt64Array.of(BigInt(logitRows)), [1]),
    };
    past.forEach((layer, l) => {
      const dims = [batch, kvHeads, 1, layer.capacity, headSize];
      // A ragged layer (heads with different room) must be made uniform (reserved) before a step.
      if (layer.mask.length !== batch * kvHeads * layer.capacity) throw new Error(`layer ${l}'s cache is not laid out [B, Hkv, capacity] for the step graph`);
      feeds[STEP_IO.pastKey(l)] = new ort.Tensor(this.kvDtype, layer.keyStore, dims);
      feeds[STEP_IO.pastValue(l)] = new ort.Tensor(this.kvDtype, layer.valueStore, dims);
      feeds[STEP_IO.pastMask(l)] = new ort.Tensor("float32", layer.mask, [batch, kvHeads, 1, 1, layer.capacity]);
    });
    const out = await this.session.run(feeds);
    const data = (name: string) => out[name].data as Float32Array;
    const kvData = (name: string) => out[name].data as KvArray;
    return {
      batchSize: batch,
      logits: data(STEP_IO.logits),
      newKeys: kvData(STEP_IO.newKeys),
      newValues: kvData(STEP_IO.newValues),
      queries: data(STEP_IO.queries),
      attentionColsums: Array.from({ length: layers }, (_, l) => data(STEP_IO.attentionColsum(l))),
      pastSlots: past.map((layer) => layer.capacity),
    };
  }
}
