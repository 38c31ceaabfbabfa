import type ort from "onnxruntime-node";
import { ARENA_PAD } from "../../kv/batch-arena.js";
import { hostLayer } from "../../kv/host-layer.js";
import type { KvArray, KvDtype } from "../../kv/layer-cache.js";
import { CausalMasks } from "./causal-masks.js";
import type { ModelConfig } from "../config/model-config.js";
import type { DecodeBatchInput, ModelRunner, PastLayer, RunnerOptions, StepInput, StepOutput } from "./model-runner.js";
import { STEP_IO } from "../graph/step-io.js";
import { SessionThreads, type ThreadGraphs, type ThreadTensor } from "./session-threads.js";

/** One session thread by default, as each holds its own copy of the weights; two let two length lanes step at once (docs/worker-threads.md). */
export const DEFAULT_SESSION_THREADS = 1;

/** Steps are cut into stages by default for models whose weights take at most this (a second copy is cheap). */
export const DEFAULT_STAGED_WEIGHTS_MAX_BYTES = 64 * 1024 * 1024;

/**
 * A decode step (or batch of them) may go through the stages (decodeInStages; the decode batcher
 * has it do so while other streams decode) when its sequences attend this many cached slots per
 * layer or more: a long context's step, which a short stream's step should not wait for whole, and
 * whose run the stages' own cost (about 0.03 ms each on stories260K) lengthens by about a tenth.
 * Batches of shorter sequences run whole: staging them cost the soak about a tenth of its calls/s.
 * Prefill chunks run whole too: each stage's session keeps its own arena for what its run
 * computes, and a chunk's attention scores would be held once per stage (docs/worker-threads.md).
 */
export const STAGED_STEP_MIN_SLOTS = 4096;

/** Layer boundaries of `stages` stages of `layers` layers, as even as they divide: [0, .., layers]. */
export function stageBounds(layers: number, stages: number): number[] {
  const count = Math.min(Math.max(1, Math.floor(stages)), layers);
  return Array.from({ length: count + 1 }, (_, i) => Math.round((i * layers) / count));
}

/**
 * Runs the step graph: one call per prefill chunk, decode step or batch of
 * decode steps, on session threads (session-threads.ts) so that the event loop
 * stays free while the model runs, and up to `parallelism` runs proceed at once.
 */
export class StepRunner implements ModelRunner {
  private readonly causalMasks = new CausalMasks();

  /** What the graph computes in. */
  readonly dtype = "float32";

  private constructor(
    private readonly sessions: SessionThreads,
    readonly config: ModelConfig,
    readonly kvDtype: KvDtype,
  ) {}

  /** `graphs`: the model bytes, or the paths of .onnx files whose weights lie beside them, whole and in stages (possibly none). */
  static async create(graphs: ThreadGraphs, config: ModelConfig, options: RunnerOptions): Promise<StepRunner> {
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      executionProviders: [options.executionProvider],
      intraOpNumThreads: options.intraOpThreads,
      graphOptimizationLevel: "all",
      // The graph's outputs have symbolic shapes that ORT's checker cannot verify; the values are exact.
      logSeverityLevel: 3,
    };
    const sessions = await SessionThreads.start(graphs, sessionOptions, options.sessionThreads ?? DEFAULT_SESSION_THREADS, {
      residentMinBytes: options.residentInputMinBytes,
      shortStepWeight: options.shortStepWeight,
    });
    return new StepRunner(sessions, config, options.kvDtype ?? "float32");
  }

  /** Runs that can proceed at once: one per session thread (and one more between a staged run's stages: decodeInStages). */
  get parallelism(): number {
    return this.sessions.size;
  }

  decodeInStages(slots: number): boolean {
    return this.sessions.stages > 0 && slots >= STAGED_STEP_MIN_SLOTS;
  }

  /** One sequence: a prefill chunk of `tokens`, or a decode step (one token). */
  run(input: StepInput): Promise<StepOutput> {
    const count = input.tokens.length;
    const positions = Array.from({ length: count }, (_, i) => input.firstPosition + i);
    const past = input.past.map((layer) => hostLayer(layer, "the CPU runner steps host slab caches only"));
    return this.execute(input.tokens, positions, 1, past, Math.min(input.queryRows, count), Math.min(input.logitRows ?? 1, count), input.inStages === true && count === 1);
  }

  /** One decode step of each of B sequences in one graph run. */
  runDecodeBatch(input: DecodeBatchInput): Promise<StepOutput> {
    return this.execute(input.tokens, input.positions, input.tokens.length, input.past, 1, 1, input.inStages === true);
  }

  recycle(output: StepOutput): void {
    this.sessions.recycle([output.logits, output.newKeys, output.newValues, output.queries, ...output.attentionColsums]);
  }

  async release(): Promise<void> {
    await this.sessions.close();
  }

  /** `tokens` and `positions` are [batch, S] row-major. */
  private async execute(
    tokens: readonly number[],
    positions: readonly number[],
    batch: number,
    past: readonly PastLayer[],
    queryRows: number,
    logitRows: number,
    inStages: boolean,
  ): Promise<StepOutput> {
    const { layers, kvHeads, headSize } = this.config;
    const count = tokens.length / batch;
    const causalMask = this.causalMasks.of(count);
    const feeds: Record<string, ThreadTensor> = {
      [STEP_IO.inputIds]: { type: "int64", data: BigInt64Array.from(tokens, BigInt), dims: [batch, count] },
      [STEP_IO.positionIds]: { type: "int64", data: BigInt64Array.from(positions, BigInt), dims: [batch, count] },
      [STEP_IO.causalMask]: { type: "float32", data: causalMask.data as Float32Array, dims: causalMask.dims },
      [STEP_IO.queryRows]: { type: "int64", data: BigInt64Array.of(BigInt(queryRows)), dims: [1] },
      [STEP_IO.logitRows]: { type: "int64", data: BigInt64Array.of(BigInt(logitRows)), dims: [1] },
    };
    past.forEach((layer, l) => {
      const dims = [batch, kvHeads, 1, layer.capacity, headSize];
      // A ragged layer (heads with different room) must be made uniform (reserved) before a step.
      if (layer.mask.length < batch * kvHeads * layer.capacity || layer.mask.length % (kvHeads * layer.capacity) !== 0) {
        throw new Error(`layer ${l}'s cache is not laid out [B, Hkv, capacity] for the step graph`);
      }
      // A sequence's cache, or a batch's arena, grows by appends: its thread may keep it and get only the new entries.
      const { revision, lengths, rowRevisions, relaidFrom } = layer;
      const appendable = (width: number, from: object | undefined, pad: number) =>
        revision !== undefined && lengths ? { revision, lengths, rowRevisions, rowSlots: layer.capacity, width, relaidFrom: from && { store: from, pad } } : undefined;
      feeds[STEP_IO.pastKey(l)] = { type: this.kvDtype, data: layer.keyStore, dims, appendable: appendable(headSize, relaidFrom?.keyStore, ARENA_PAD.kv) };
      feeds[STEP_IO.pastValue(l)] = { type: this.kvDtype, data: layer.valueStore, dims, appendable: appendable(headSize, relaidFrom?.valueStore, ARENA_PAD.kv) };
      feeds[STEP_IO.pastMask(l)] = { type: "float32", data: layer.mask, dims: [batch, kvHeads, 1, 1, layer.capacity], appendable: appendable(1, relaidFrom?.mask, ARENA_PAD.mask) };
    });
    // The inputs are copied here, synchronously: the caches may change while the step runs.
    const out = await this.sessions.run(feeds, inStages);
    const data = (name: string) => out[name].data as Float32Array;
    const kvData = (name: string) => out[name].data as KvArray;
    return {
      batchSize: batch,
      logits: data(STEP_IO.logits),
      newKeys: kvData(STEP_IO.newKeys),
      newValues: kvData(STEP_IO.newValues),
      queries: kvData(STEP_IO.queries),
      attentionColsums: Array.from({ length: layers }, (_, l) => data(STEP_IO.attentionColsum(l))),
      pastSlots: past.map((layer) => layer.capacity),
    };
  }
}
