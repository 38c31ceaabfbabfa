import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { CONVERTED_FORMAT, KV_DTYPES, MANIFEST_FILE, stepGraphFile, WEIGHTS_FILE, type ConvertedManifest } from "./converted-model.js";
import { writeWeightsFile } from "../graph/graph-weights.js";
import { HfCheckpoint } from "../checkpoints/hf-checkpoint.js";
import { HfTokenizer } from "../tokenizers/hf-tokenizer.js";
import { stepGraphTensors } from "../graph/step-graph-weights.js";
import { FLOAT32_PROJECTIONS } from "../graph/projection-weights.js";
import type { GraphTensor, ProjectionStorage } from "../graph/weight-layout.js";

/** Files copied as they are: the tokenizer and its settings, and the original config for reference. */
const COPIED_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json", "chat_template.jinja"];

export interface ConvertOptions {
  /** How the projections are stored (default float32). */
  projections?: ProjectionStorage;
  /** Called after each weight is written: its name, and how many of `total` are done. */
  onTensor?(name: string, done: number, total: number): void;
}

/**
 * Converts a Hugging Face checkpoint folder into kvwarden's layout (see
 * converted-model.ts). The config, every tensor's presence and shape, and the
 * tokenizer are checked before anything is written; weights are then read,
 * widened to float32, rearranged (and quantized, if asked) and written one
 * layer at a time.
 */
export async function convertHfCheckpoint(hfDir: string, outDir: string, options: ConvertOptions = {}): Promise<ConvertedManifest> {
  const projections = options.projections ?? FLOAT32_PROJECTIONS;
  const checkpoint = HfCheckpoint.open(hfDir);
  HfTokenizer.load(hfDir);
  mkdirSync(outDir, { recursive: true });
  rmSync(join(outDir, MANIFEST_FILE), { force: true }); // incomplete until written again
  const partial = join(outDir, `${WEIGHTS_FILE}.partial`);
  const total = countTensors(checkpoint, projections);
  let done = 0;
  function* reported(tensors: Iterable<GraphTensor>): Generator<GraphTensor> {
    for (const tensor of tensors) {
      yield tensor;
      options.onTensor?.(tensor.name, ++done, total);
    }
  }
  const tensors = await writeWeightsFile(partial, reported(stepGraphTensors(checkpoint, projections)));
  renameSync(partial, join(outDir, WEIGHTS_FILE));
  for (const file of COPIED_FILES) if (existsSync(join(hfDir, file))) copyFileSync(join(hfDir, file), join(outDir, file));
  const manifest: ConvertedManifest = {
    format: CONVERTED_FORMAT,
    config: checkpoint.config,
    source: { path: resolve(hfDir), architecture: checkpoint.config.architecture, dtypes: checkpoint.tensors.dtypes },
    projections,
    tensors,
  };
  for (const kvDtype of KV_DTYPES) stepGraphFile(outDir, manifest, kvDtype);
  writeFileSync(join(outDir, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + "\n");
  return manifest;
}

/** The number of graph weights `stepGraphTensors` yields for this checkpoint. */
function countTensors(checkpoint: HfCheckpoint, projections: ProjectionStorage): number {
  const { qkvBias, outputBias } = checkpoint.spec;
  const quantized = projections.dtype !== "float32";
  const perProjection = quantized ? 3 : 1; // codes, scales and zero points
  const perLayer = 2 + 4 * perProjection + (qkvBias ? 1 : 0) + (outputBias ? 1 : 0);
  const classifier = quantized ? perProjection : checkpoint.tiedClassifier ? 0 : 1;
  return 2 + checkpoint.config.layers * perLayer + classifier;
}
