import { basename } from "node:path";
import type { EngineModel } from "../engine/engine.js";
import { loadLlama2cCheckpoint } from "./checkpoint.js";
import { buildLlamaStepGraph } from "./llama-graph.js";
import { StepRunner, type RunnerOptions } from "./step-runner.js";
import { Llama2cTokenizer } from "./tokenizer.js";

export interface ModelFiles {
  modelPath: string;
  tokenizerPath: string;
}

/** Loads a llama2.c checkpoint and tokenizer and builds its step graph. */
export async function loadModel(files: ModelFiles, options: RunnerOptions): Promise<EngineModel> {
  const weights = loadLlama2cCheckpoint(files.modelPath, basename(files.modelPath).replace(/\.bin$/, ""));
  const tokenizer = Llama2cTokenizer.load(files.tokenizerPath, weights.config.vocabSize);
  const runner = await StepRunner.create(buildLlamaStepGraph(weights), weights.config, options);
  return {
    config: weights.config,
    tokenizer,
    runner,
    // llama2.c's own runner stops at BOS as well as EOS.
    defaultStopTokens: [tokenizer.eosId, tokenizer.bosId],
  };
}
