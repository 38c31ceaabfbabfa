import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { KvDtype } from "../../kv/layer-cache.js";
import type { ModelConfig } from "../config/model-config.js";
import { fileWeights } from "../graph/graph-weights.js";
import { buildLlamaStepGraph, type StepStage } from "../graph/llama-step-graph.js";
import type { ProjectionStorage, StoredTensor } from "../graph/weight-layout.js";

/**
 * What `kvwarden convert` writes, and `serve --model` reads:
 *
 *   kvwarden.json          this manifest: the model config and where each weight lies
 *   weights.bin            weights in the step graph's layout, page-aligned: float32,
 *                          or the projections block-quantized (uint8 codes and zero points, float32 scales)
 *   step-kv-float32.onnx   the step graph for each KV dtype, weights referenced in
 *   step-kv-float16.onnx   weights.bin (onnxruntime reads them from disk, not via JS)
 *   tokenizer.json, tokenizer_config.json, generation_config.json, config.json, ...
 *
 * The manifest is written last, so a folder that has one is complete.
 */
export const MANIFEST_FILE = "kvwarden.json";
export const WEIGHTS_FILE = "weights.bin";
/** Bumped when weights.bin's layout changes; older folders must be converted again. */
export const CONVERTED_FORMAT = 2;
export const KV_DTYPES: readonly KvDtype[] = ["float32", "float16"];

export interface ConvertedManifest {
  format: number;
  config: ModelConfig;
  /** What was converted: the Hugging Face folder and its storage dtypes. */
  source: { path: string; architecture: string; dtypes: string[] };
  /** How the projections are stored. */
  projections: ProjectionStorage;
  tensors: StoredTensor[];
}

export function isConvertedModel(dir: string): boolean {
  return existsSync(join(dir, MANIFEST_FILE));
}

/** Whether `dir` holds a complete conversion in this kvwarden's format (else a cached one is converted again). */
export function isCurrentConversion(dir: string): boolean {
  return isConvertedModel(dir) && (JSON.parse(readFileSync(join(dir, MANIFEST_FILE), "utf8")) as { format: unknown }).format === CONVERTED_FORMAT;
}

export function readManifest(dir: string): ConvertedManifest {
  const manifest = JSON.parse(readFileSync(join(dir, MANIFEST_FILE), "utf8")) as ConvertedManifest;
  if (manifest.format !== CONVERTED_FORMAT) {
    throw new Error(`${dir} was converted in format ${manifest.format}; this kvwarden reads format ${CONVERTED_FORMAT}: run kvwarden convert again`);
  }
  return manifest;
}

/**
 * The path of the step graph for `kvDtype` (or one `stage` of it), (re)written when this kvwarden
 * builds a different graph than the file holds, so a folder converted by an
 * earlier version still runs the current graph. The graph holds no weights:
 * building it takes milliseconds.
 */
export function stepGraphFile(dir: string, manifest: ConvertedManifest, kvDtype: KvDtype, deviceCache = false, stage?: StepStage): string {
  const path = join(dir, `step-kv-${kvDtype}${deviceCache ? "-device" : ""}${stage ? `-layers-${stage.from}-${stage.to}` : ""}.onnx`);
  const graph = buildLlamaStepGraph(manifest.config, fileWeights(WEIGHTS_FILE, manifest.tensors, manifest.projections), { kvDtype, deviceCache, stage });
  if (!existsSync(path) || !Buffer.from(graph).equals(readFileSync(path))) {
    // Written aside and renamed, so a concurrent reader never sees half a file.
    const partial = `${path}.${process.pid}.partial`;
    try {
      writeFileSync(partial, graph);
      renameSync(partial, path);
    } catch (error) {
      throw new Error(`${dir} needs this kvwarden's step graph but cannot be written (${(error as Error).message}): run kvwarden convert again`);
    }
  }
  return path;
}
