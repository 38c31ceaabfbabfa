import type { ModelConfig } from "./config/model-config.js";
import type { ModelRunner } from "./runners/model-runner.js";
import type { Tokenizer } from "./tokenizers/tokenizer.js";
import type { WeightDtype } from "./graph/weight-layout.js";

/** The model as the engine drives it. */
export interface EngineModel {
  config: ModelConfig;
  tokenizer: Tokenizer;
  runner: ModelRunner;
  /** How the projection weights are stored. */
  weightDtype: WeightDtype;
  /** Tokens that end generation unless the request says otherwise. */
  defaultStopTokens: readonly number[];
}

/** The last position a sequence may reach: the model's trained context, unless allowed past it. */
export function contextLimit(model: EngineModel, allowPastContext: boolean): number {
  return allowPastContext ? Infinity : model.config.contextLength;
}
