import { createHash } from "node:crypto";
import { existsSync, readdirSync, realpathSync, statSync, type Stats } from "node:fs";
import { homedir } from "node:os";
import { basename, join } from "node:path";
import type { EngineModel } from "./engine-model.js";
import { loadLlama2cCheckpoint } from "./checkpoints/llama2c-checkpoint.js";
import { convertHfCheckpoint } from "./conversion/convert.js";
import { defaultModelFiles } from "./default-model.js";
import type { ModelFiles } from "./model-files.js";
import { isConvertedModel, isCurrentConversion, readManifest, stepGraphFile } from "./conversion/converted-model.js";
import { HfTokenizer } from "./tokenizers/hf-tokenizer.js";
import { buildStepGraphInMemory, type StepStage } from "./graph/llama-step-graph.js";
import type { ModelConfig } from "./config/model-config.js";
import type { ModelRunner, RunnerOptions } from "./runners/model-runner.js";
import { DEFAULT_STAGED_WEIGHTS_MAX_BYTES, stageBounds, StepRunner } from "./runners/step-runner.js";
import { WebGpuStepRunner } from "./runners/webgpu-step-runner.js";
import { Llama2cTokenizer } from "./tokenizers/llama2c-tokenizer.js";

/** What --model (and --tokenizer) name: a model folder, or a llama2.c checkpoint and its tokenizer; absent: stories260K. */
export type ModelSource = { dir: string } | { files: ModelFiles } | undefined;

/** Checks serve's and eval's --model and --tokenizer before anything starts: the paths exist and go together. */
export function modelSource(model?: string, tokenizer?: string): ModelSource {
  if (model === undefined) {
    if (tokenizer !== undefined) throw new Error("--model and --tokenizer go together");
    return undefined;
  }
  if (existing("--model", model).isDirectory()) {
    if (tokenizer !== undefined) throw new Error("--tokenizer is for llama2.c checkpoints; a model folder brings its own");
    return { dir: model };
  }
  if (tokenizer === undefined) throw new Error("--model and --tokenizer go together");
  existing("--tokenizer", tokenizer);
  return { files: { modelPath: model, tokenizerPath: tokenizer } };
}

function existing(flag: string, path: string): Stats {
  try {
    return statSync(path);
  } catch (error) {
    const { code, message } = error as NodeJS.ErrnoException;
    throw new Error(`${flag} ${path}: ${code === "ENOENT" ? "no such file or directory" : message}`);
  }
}

/** Loads what modelSource found, the way serve and eval both do. */
export async function loadModelSource(source: ModelSource, options: RunnerOptions, dirOptions: ModelDirOptions = {}): Promise<EngineModel> {
  if (source && "dir" in source) return loadModelDir(source.dir, options, dirOptions);
  return loadModel(source?.files ?? (await defaultModelFiles()), options);
}

/** Loads a llama2.c checkpoint and tokenizer and builds its step graph. */
export async function loadModel(files: ModelFiles, options: RunnerOptions): Promise<EngineModel> {
  const weights = loadLlama2cCheckpoint(files.modelPath, basename(files.modelPath).replace(/\.bin$/, ""));
  const tokenizer = Llama2cTokenizer.load(files.tokenizerPath, weights.config.vocabSize);
  const runner = await createRunner(weights.config, options, statSync(files.modelPath).size, (deviceCache, stage) =>
    buildStepGraphInMemory(weights, { kvDtype: options.kvDtype ?? "float32", deviceCache, stage }),
  );
  return {
    config: weights.config,
    tokenizer,
    runner,
    weightDtype: "float32",
    // llama2.c's own runner stops at BOS as well as EOS.
    defaultStopTokens: [tokenizer.eosId, tokenizer.bosId],
  };
}

/**
 * The runner for the execution provider: WebGPU keeps the KV cache on the device and needs the graph
 * built for that; on the CPU, steps may be cut into stages (RunnerOptions.stepStages) for a model of
 * `weightBytes`.
 */
async function createRunner(
  config: ModelConfig,
  options: RunnerOptions,
  weightBytes: number,
  graph: (deviceCache: boolean, stage?: StepStage) => Uint8Array | string,
): Promise<ModelRunner> {
  if (options.executionProvider !== "webgpu") {
    const bounds = stageBounds(config.layers, options.stepStages ?? (weightBytes <= DEFAULT_STAGED_WEIGHTS_MAX_BYTES ? config.layers : 1));
    const stages = bounds.length > 2 ? bounds.slice(1).map((to, i) => graph(false, { from: bounds[i], to })) : [];
    return StepRunner.create({ whole: graph(false), stages }, config, options);
  }
  if ((options.kvDtype ?? "float32") !== "float32") throw new Error("--execution-provider webgpu keeps the KV cache in float32: drop --kv-dtype float16");
  return WebGpuStepRunner.create(graph(true), config, options.intraOpThreads);
}

export interface ModelDirOptions {
  /** Called before a Hugging Face folder is converted into `cacheDir`. */
  onConvert?(cacheDir: string): void;
}

/**
 * Loads a model folder: one written by `kvwarden convert`, or a Hugging Face
 * checkpoint, which is converted once into the user cache first. Weights go
 * from disk to onnxruntime without passing through JS.
 */
export async function loadModelDir(dir: string, options: RunnerOptions, dirOptions: ModelDirOptions = {}): Promise<EngineModel> {
  let converted = dir;
  if (!isConvertedModel(dir)) {
    if (!existsSync(join(dir, "config.json"))) throw new Error(`${dir}: neither a converted kvwarden model (kvwarden.json) nor a Hugging Face checkpoint (config.json)`);
    converted = convertedCacheDir(dir);
    if (!isCurrentConversion(converted)) {
      dirOptions.onConvert?.(converted);
      await convertHfCheckpoint(dir, converted);
    }
  }
  const manifest = readManifest(converted);
  const kvDtype = options.kvDtype ?? "float32";
  const weightBytes = manifest.tensors.reduce((sum, tensor) => sum + tensor.length, 0);
  const runner = await createRunner(manifest.config, options, weightBytes, (deviceCache, stage) => stepGraphFile(converted, manifest, kvDtype, deviceCache, stage));
  const tokenizer = HfTokenizer.load(converted);
  return { config: manifest.config, tokenizer, runner, weightDtype: manifest.projections.dtype, defaultStopTokens: tokenizer.stopTokens };
}

/**
 * Where a Hugging Face folder's conversion is cached: named after the folder's
 * real path and its files' sizes and modification times, so changed weights
 * are converted again.
 */
export function convertedCacheDir(hfDir: string): string {
  const real = realpathSync(hfDir);
  const hash = createHash("sha256").update(real);
  for (const file of readdirSync(real).sort()) {
    const stat = statSync(join(real, file));
    if (stat.isFile()) hash.update(`\0${file}\0${stat.size}\0${stat.mtimeMs}`);
  }
  const cache = process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache");
  return join(cache, "kvwarden", "converted", `${basename(real)}-${hash.digest("hex").slice(0, 16)}`);
}
