import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadLlama2cCheckpoint } from "../../src/model/checkpoints/llama2c-checkpoint.js";
import type { ModelWeights } from "../../src/model/checkpoints/model-weights.js";
import { loadModel } from "../../src/model/load-model.js";
import type { EngineModel } from "../../src/engine/engine.js";

/** stories260K from ../shared/models, as developers and CI have it. */
export const MODEL_DIR = fileURLToPath(new URL("../../../shared/models/", import.meta.url));
export const MODEL_FILES = { modelPath: join(MODEL_DIR, "stories260K.bin"), tokenizerPath: join(MODEL_DIR, "tok512.bin") };

/** The published greedy sample's first 20 token ids (docs/models.md, "The llama2.c format"). */
export const REFERENCE_FIRST_TOKENS = [403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337];

/** The published greedy sample's first 200 tokens as text. */
export const REFERENCE_TEXT = `Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.
Lily's mom said, "Lily, let's go to the park." Lily was sad and didn't know what to do. She said, "I want to play with your ball, but I can't find it."
Lily was sad and didn't know what to do. She said, "I'm sorry, Lily. I didn't know what to do."
Lily didn't want to help her mom, so she`;

export function loadTestWeights(): ModelWeights {
  return loadLlama2cCheckpoint(MODEL_FILES.modelPath, "stories260K");
}

export function loadTestModel(sessionThreads?: number): Promise<EngineModel> {
  return loadModel(MODEL_FILES, { executionProvider: "cpu", intraOpThreads: 1, sessionThreads });
}
