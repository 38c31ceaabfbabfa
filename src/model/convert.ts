import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { CONVERTED_FORMAT, KV_DTYPES, MANIFEST_FILE, stepGraphFile, WEIGHTS_FILE, type ConvertedManifest } from "./converted-model.js";
import type { GraphTensor } from "./graph-weights.js";
import { writeWeightsFile } from "./graph-weights.js";
import { HfCheckpoint } from "./hf-checkpoint.js";
import { HfTokenizer } from "./hf-tokenizer.js";
import { stepGraphTensors } from "./llama-graph.js";

/** Files copied as they are: the tokenizer and its settings, and the original config for reference. */
const COPIED_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json", "chat_template.jinja"];

export interface ConvertProgress {
  /** Called after each weight is written: its name, and how many of `total` are done. */
  onTensor?(name: string, done: number, total: number): void;
}

/**
 * Converts a Hugging Face checkpoint folder into kvwarden's layout (see
 * converted-model.ts). The config, every tensor's presence and shape, and the
 * tokenizer are checked before anything is written; weights are then read,
 * widened to float32, rearranged and written one layer at a time.
 */
export async function convertHfCheckpoint(hfDir: string, outDir: string, progress: ConvertProgress = {}): Promise<ConvertedManifest> {
  const checkpoint = HfCheckpoint.open(hfDir);
  HfTokenizer.load(hfDir);
  mkdirSync(outDir, { recursive: true });
  rmSync(join(outDir, MANIFEST_FILE), { force: true }); // incomplete until written again
  const partial = join(outDir, `${WEIGHTS_FILE}.partial`);
  const total = countTensors(checkpoint);
  let done = 0;
  function* reported(tensors: Iterable<GraphTensor>): Generator<GraphTensor> {
    for (const tensor of tensors) {
      yield tensor;
      progress.onTensor?.(tensor.name, ++done, total);
    }
  }
  const tensors = await writeWeightsFile(partial, reported(stepGraphTensors(checkpoint)));
  renameSync(partial, join(outDir, WEIGHTS_FILE));
  for (const file of COPIED_FILES) if (existsSync(join(hfDir, file))) copyFileSync(join(hfDir, file), join(outDir, file));
  const manifest: ConvertedManifest = {
    format: CONVERTED_FORMAT,
    config: checkpoint.config,
    source: { path: resolve(hfDir), architecture: checkpoint.config.architecture, dtypes: checkpoint.tensors.dtypes },
    tensors,
  };
  for (const kvDtype of KV_DTYPES) stepGraphFile(outDir, manifest, kvDtype);
  writeFileSync(join(outDir, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + "\n");
  return manifest;
}

/** The number of graph weights `stepGraphTensors` yields for this checkpoint. */
function countTensors(checkpoint: HfCheckpoint): number {
  const { qkvBias, outputBias } = checkpoint.spec;
  const perLayer = 6 + (qkvBias ? 1 : 0) + (outputBias ? 1 : 0);
  return 2 + checkpoint.config.layers * perLayer + (checkpoint.tiedClassifier ? 0 : 1);
}
