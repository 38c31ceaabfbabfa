import ort from "onnxruntime-node";
import { existsSync, readdirSync } from "node:fs";
import { basename, join } from "node:path";
import { DeviceLayerCache } from "../../kv/device-layer-cache.js";
import { DeviceSlab, type SlabDevice } from "../../kv/device-slab.js";
import type { KvArray } from "../../kv/layer-cache.js";
import type { SlabPool } from "../../kv/slab-pool.js";
import { CausalMasks } from "./causal-masks.js";
import type { ModelConfig } from "../config/model-config.js";
import { STEP_IO } from "../graph/step-io.js";
import type { DecodeBatchInput, DeviceCacheRuntime, ModelRunner, StepInput, StepOutput } from "./model-runner.js";
import { buildSlabGatherGraph, SLAB_GATHER_IO } from "../graph/slab-gather-graph.js";

/** Where the Vulkan loader looks for drivers (ICDs) when VK_ICD_FILENAMES does not say. */
const ICD_DIRS = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"];

/**
 * Runs the device-resident step graph (built with `deviceCache`) on onnxruntime's WebGPU execution
 * provider: each layer's keys and values stay on the device as DeviceSlabs between steps, each
 * step returns the next slabs (`present_*`, kept on the device with preferredOutputLocation
 * 'gpu-buffer'), and only logits, recent queries and attention column sums come to the host.
 *
 * One sequence per run: the decode batch's side-by-side copy (BatchArena) lives on the host, so the
 * engine turns batching off for this runner.
 */
export class WebGpuStepRunner implements ModelRunner, SlabDevice, DeviceCacheRuntime {
  readonly dtype = "float32";
  readonly kvDtype = "float32";
  /** One run at a time, on the main thread: its keys and values are GPU buffers, which cannot cross to a worker_thread. */
  readonly parallelism = 1;
  readonly location = "webgpu";
  readonly deviceCache: DeviceCacheRuntime = this;
  private readonly causalMasks = new CausalMasks();

  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly deviceGather: ort.InferenceSession,
    private readonly hostGather: ort.InferenceSession,
    readonly config: ModelConfig,
    readonly adapter: string,
  ) {}

  /** `graph`: the device-resident step graph's bytes, or the path of its .onnx file. Fails with a clear error without a WebGPU adapter. */
  static async create(graph: Uint8Array | string, config: ModelConfig, intraOpThreads: number): Promise<WebGpuStepRunner> {
    const present = Object.fromEntries(
      Array.from({ length: config.layers }, (_, l) => [STEP_IO.presentKey(l), STEP_IO.presentValue(l)]).flat().map((name) => [name, "gpu-buffer" as const]),
    );
    const base: ort.InferenceSession.SessionOptions = {
      executionProviders: ["webgpu"],
      intraOpNumThreads: intraOpThreads,
      graphOptimizationLevel: "all",
      logSeverityLevel: 3,
    };
    const gatherGraph = buildSlabGatherGraph(config.kvHeads, config.headSize, "float32");
    try {
      const session =
        typeof graph === "string"
          ? await ort.InferenceSession.create(graph, { ...base, preferredOutputLocation: present })
          : await ort.InferenceSession.create(graph, { ...base, preferredOutputLocation: present });
      const deviceGather = await ort.InferenceSession.create(gatherGraph, { ...base, preferredOutputLocation: "gpu-buffer" });
      const hostGather = await ort.InferenceSession.create(gatherGraph, base);
      return new WebGpuStepRunner(session, deviceGather, hostGather, config, describeVulkanDrivers());
    } catch (error) {
      const failure = /Failed to get a WebGPU adapter[^\n]*/.exec((error as Error).message);
      if (!failure) throw error;
      throw new Error(
        `--execution-provider webgpu: onnxruntime found no WebGPU adapter ("${failure[0]}"; ${describeVulkanDrivers()}). ` +
          `Without a GPU, install Mesa's lavapipe (Debian bookworm-backports mesa-vulkan-drivers, see tools/system-packages.sh), or use --execution-provider cpu`,
      );
    }
  }

  createLayer(pool: SlabPool): DeviceLayerCache {
    return new DeviceLayerCache(pool, this.config.kvHeads, this.config.headSize, this);
  }

  async run(input: StepInput): Promise<StepOutput> {
    const { layers, kvHeads } = this.config;
    const count = input.tokens.length;
    const queryRows = Math.min(input.queryRows, count);
    const logitRows = Math.min(input.logitRows ?? 1, count);
    const past = input.past.map((layer) => {
      if (!(layer instanceof DeviceLayerCache)) throw new Error("the WebGPU runner steps device-resident caches only");
      return layer;
    });
    const slabs: DeviceSlab[] = [];
    for (const layer of past) slabs.push(await layer.slabForStep());
    const int64 = (values: readonly number[], dims: number[]) => new ort.Tensor("int64", BigInt64Array.from(values, BigInt), dims);
    const feeds: Record<string, ort.Tensor> = {
      [STEP_IO.inputIds]: int64(input.tokens, [1, count]),
      [STEP_IO.positionIds]: int64(Array.from({ length: count }, (_, i) => input.firstPosition + i), [1, count]),
      [STEP_IO.causalMask]: this.causalMasks.of(count),
      [STEP_IO.queryRows]: int64([queryRows], [1]),
      [STEP_IO.logitRows]: int64([logitRows], [1]),
    };
    past.forEach((layer, l) => {
      feeds[STEP_IO.pastKey(l)] = slabs[l].key;
      feeds[STEP_IO.pastValue(l)] = slabs[l].value;
      feeds[STEP_IO.pastMask(l)] = new ort.Tensor("float32", layer.mask, [1, kvHeads, 1, 1, layer.capacity]);
      feeds[STEP_IO.appendRows(l)] = new ort.Tensor("int64", appendRows(layer.lengths, layer.capacity, count), [kvHeads * count, 1]);
    });
    const out = await this.session.run(feeds);
    past.forEach((layer, l) => layer.adopt(new DeviceSlab(out[STEP_IO.presentKey(l)], out[STEP_IO.presentValue(l)], layer.capacity), count));
    const data = (name: string) => out[name].data as Float32Array;
    return {
      batchSize: 1,
      logits: data(STEP_IO.logits),
      // The new rows went into the device slabs (adopted above): nothing for the host to append.
      newKeys: new Float32Array(0),
      newValues: new Float32Array(0),
      queries: out[STEP_IO.queries].data as KvArray,
      attentionColsums: Array.from({ length: layers }, (_, l) => data(STEP_IO.attentionColsum(l))),
      pastSlots: past.map((layer) => layer.capacity),
    };
  }

  runDecodeBatch(_input: DecodeBatchInput): Promise<StepOutput> {
    return Promise.reject(new Error("the WebGPU runner steps one sequence per run (the engine turns decode batching off for it)"));
  }

  async gather(source: DeviceSlab | null, rows: Int32Array, capacity: number): Promise<DeviceSlab> {
    const { kvHeads, headSize } = this.config;
    // A new cache: row 0 of a one-row zero slab, everywhere.
    const zeros = () => new ort.Tensor("float32", new Float32Array(kvHeads * headSize), [1, kvHeads, 1, 1, headSize]);
    const slots = new ort.Tensor("int32", source ? rows : new Int32Array(rows.length), [rows.length]);
    const run = async (slab: ort.Tensor) => (await this.deviceGather.run({ [SLAB_GATHER_IO.slab]: slab, [SLAB_GATHER_IO.slots]: slots }))[SLAB_GATHER_IO.gathered];
    const key = await run(source?.key ?? zeros());
    const value = await run(source?.value ?? zeros());
    return new DeviceSlab(key, value, capacity);
  }

  readKeys(source: DeviceSlab, rows: Int32Array): Promise<Float32Array> {
    return this.readBack(source.key, rows);
  }

  readValues(source: DeviceSlab, rows: Int32Array): Promise<Float32Array> {
    return this.readBack(source.value, rows);
  }

  upload(keys: Float32Array, values: Float32Array, capacity: number): DeviceSlab {
    const dims = [1, this.config.kvHeads, 1, capacity, this.config.headSize];
    return new DeviceSlab(new ort.Tensor("float32", keys, dims), new ort.Tensor("float32", values, dims), capacity);
  }

  private async readBack(slab: ort.Tensor, rows: Int32Array): Promise<Float32Array> {
    const slots = new ort.Tensor("int32", rows, [rows.length]);
    const out = await this.hostGather.run({ [SLAB_GATHER_IO.slab]: slab, [SLAB_GATHER_IO.slots]: slots });
    return out[SLAB_GATHER_IO.gathered].data as Float32Array;
  }

  async release(): Promise<void> {
    await Promise.all([this.session.release(), this.deviceGather.release(), this.hostGather.release()]);
  }
}

/** The step's `append_rows` for one layer: head h's j-th new row goes to slab row h * C + lengths[h] + j (room reserved). */
function appendRows(lengths: Int32Array, capacity: number, count: number): BigInt64Array {
  const rows = new BigInt64Array(lengths.length * count);
  lengths.forEach((length, h) => {
    for (let j = 0; j < count; j++) rows[h * count + j] = BigInt(h * capacity + length + j);
  });
  return rows;
}

/**
 * The Vulkan drivers Dawn may pick its adapter from (onnxruntime-node does not say which adapter
 * it took): VK_ICD_FILENAMES when set, else the ICD manifests installed.
 */
function describeVulkanDrivers(): string {
  const chosen = process.env.VK_ICD_FILENAMES ?? process.env.VK_DRIVER_FILES;
  const files = chosen
    ? chosen.split(":").filter(Boolean)
    : ICD_DIRS.filter((dir) => existsSync(dir)).flatMap((dir) => readdirSync(dir).filter((f) => f.endsWith(".json")).map((f) => join(dir, f)));
  if (files.length === 0) return "Vulkan via Dawn; no Vulkan drivers installed";
  return `Vulkan via Dawn; drivers: ${files.map((file) => `${chosen ? file : basename(file, ".json")}${existsSync(file) ? "" : " (missing)"}`).join(", ")}`;
}
