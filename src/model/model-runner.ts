import type { DeviceLayerCache } from "../kv/device-layer-cache.js";
import type { KvDtype } from "../kv/layer-cache.js";
import type { SlabPool } from "../kv/slab-pool.js";
import type { ModelConfig } from "./checkpoint.js";
import type { DecodeBatchInput, StepInput, StepOutput } from "./step-runner.js";

/** What the engine drives: the step graph on some execution provider. */
export interface ModelRunner {
  readonly config: ModelConfig;
  /** What the graph computes in. */
  readonly dtype: "float32";
  readonly kvDtype: KvDtype;
  run(input: StepInput): Promise<StepOutput>;
  runDecodeBatch(input: DecodeBatchInput): Promise<StepOutput>;
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
