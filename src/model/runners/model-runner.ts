import type { DeviceLayerCache } from "../../kv/device-layer-cache.js";
import type { KvLayer } from "../../kv/kv-layer.js";
import type { KvArray, KvDtype } from "../../kv/layer-cache.js";
import type { SlabPool } from "../../kv/slab-pool.js";
import type { ModelConfig } from "../config/model-config.js";

/** What the engine drives: the step graph on some execution provider. */
export interface ModelRunner {
  readonly config: ModelConfig;
  /** What the graph computes in. */
  readonly dtype: "float32";
  readonly kvDtype: KvDtype;
  /** Runs that can proceed at once (the engine steps that many length lanes together). */
  readonly parallelism: number;
  /**
   * Whether a decode step whose sequences attend `slots` cached slots per layer may run in stages
   * (`inStages` of its input), so that one more run, not in stages, can go between two of them on
   * its thread (docs/worker-threads.md).
   */
  decodeInStages?(slots: number): boolean;
  run(input: StepInput): Promise<StepOutput>;
  runDecodeBatch(input: DecodeBatchInput): Promise<StepOutput>;
  /**
   * The engine has taken what it keeps from `output` (Sequence.absorbStep copies it all) and reads
   * it no more: its buffers may carry a later step's outputs instead of fresh memory.
   */
  recycle?(output: StepOutput): void;
  release(): Promise<void>;
  /** Present when keys and values live on the device rather than in host slabs. */
  readonly deviceCache?: DeviceCacheRuntime;
}

/** A runner whose KV cache lives on the device. */
export interface DeviceCacheRuntime {
  /** Where keys and values are held, as Stats reports it (e.g. "webgpu"). */
  readonly location: string;
  /** The device as far as it can be told, for Info. */
  readonly adapter: string;
  /** A new, empty layer cache of one sequence, its keys and values on this device. */
  createLayer(pool: SlabPool): DeviceLayerCache;
}

/**
 * A layer's cache as the graph reads it: padded slabs [Hkv, capacity, d] in the KV dtype, and a
 * mask [Hkv, capacity]; for a batch, the B sequences' slabs side by side ([B, Hkv, capacity, d]),
 * the first B slots of stores that may hold more (a batch arena keeps room for its largest batch).
 */
export interface PastLayer {
  readonly capacity: number;
  readonly keyStore: KvArray;
  readonly valueStore: KvArray;
  readonly mask: Float32Array;
  /**
   * A sequence's own cache (LayerCache) and a batch's working copy (BatchArena) have these: while
   * `revision` and the stores stay, they only gain entries at the ends of their rows (`lengths`, one
   * per batch slot and KV head) or, in a batch, have rows copied afresh (`rowRevisions`), so a
   * runner may keep a copy beside the model and send only those (docs/worker-threads.md).
   */
  readonly revision?: number;
  readonly lengths?: Int32Array;
  readonly rowRevisions?: Int32Array;
  /**
   * A batch arena resized for this step: the stores these were laid out from, each row keeping its
   * first slots, as many as fit, the rest ARENA_PAD (src/kv/batch-arena.ts). A runner's copy of
   * those may be laid out the same way rather than sent again.
   */
  readonly relaidFrom?: { readonly keyStore: KvArray; readonly valueStore: KvArray; readonly mask: Float32Array } | null;
}

export interface StepInput {
  tokens: readonly number[];
  /** Original position of the first token; the rest follow. */
  firstPosition: number;
  /** The sequence's layers: host slabs for the CPU runner, device-resident for the WebGPU one. */
  past: readonly KvLayer[];
  /** Trailing rows whose post-RoPE queries to return. */
  queryRows: number;
  /** Trailing rows that get logits (default 1: the last token's). */
  logitRows?: number;
  /** A decode step that `decodeInStages` allows: run it in stages. */
  inStages?: boolean;
}

/** One decode step for each of B sequences, run together. */
export interface DecodeBatchInput {
  /** One token per sequence. */
  tokens: readonly number[];
  /** Each token's original position. */
  positions: readonly number[];
  /** Per layer, the B sequences' caches side by side. */
  past: readonly PastLayer[];
  /** A step that `decodeInStages` allows: run it in stages. */
  inStages?: boolean;
}

export interface StepOutput {
  /** Sequences in the step (B): 1 for `run`, the batch for `runDecodeBatch`. */
  batchSize: number;
  /** Logits of the last `logitRows` tokens of each sequence [B, logitRows, V]. */
  logits: Float32Array;
  /** New post-RoPE keys and values [L, B, Hkv, S, d], in the KV dtype. */
  newKeys: KvArray;
  newValues: KvArray;
  /** Post-RoPE queries of the last rows [L, B, Hq, R, d], in the KV dtype. */
  queries: KvArray;
  /** Per layer, attention summed over rows and query groups [B, Hkv, C_l + S]. */
  attentionColsums: Float32Array[];
  /** Per layer, the cached slots attention ran over (C_l). */
  pastSlots: number[];
}

export type ExecutionProvider = "cpu" | "cuda" | "webgpu";

export interface RunnerOptions {
  executionProvider: ExecutionProvider;
  intraOpThreads: number;
  /** CPU and CUDA: worker_threads, each with its own session (and weights), that run steps off the event loop. */
  sessionThreads?: number;
  /**
   * CPU and CUDA: into how many stages (runs of consecutive layers) a long step may be cut, so that
   * short steps run between its stages instead of after it; each thread then holds the weights twice
   * (the whole graph's and the stages'). 1: never. Default: one stage per layer for a model whose
   * weights take at most DEFAULT_STAGED_WEIGHTS_MAX_BYTES, else 1 (docs/worker-threads.md).
   */
  stepStages?: number;
  /**
   * CPU and CUDA, with steps in stages: between two stages of a long step, steps of other streams may
   * take up to this many times the thread time of the stage before (default DEFAULT_SHORT_STEP_WEIGHT;
   * 1: equal time; docs/worker-threads.md).
   */
  shortStepWeight?: number;
  /** CPU and CUDA: a sequence's cache layer stores this large or larger stay on a session thread between steps (default 256 KiB; docs/worker-threads.md). */
  residentInputMinBytes?: number;
  /** How the KV store keeps keys and values (default float32); the graph must be built for it. */
  kvDtype?: KvDtype;
}
