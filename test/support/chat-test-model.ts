import { join } from "node:path";
import type { EngineModel } from "../../src/engine/engine.js";
import { convertHfCheckpoint } from "../../src/model/conversion/convert.js";
import { loadModelDir } from "../../src/model/load-model.js";
import { llama2cAsHfConfig, llama2cAsHfTensors, llama2cTokenizerJson, writeHfCheckpoint, writeTokenizer } from "../model/hf-fixtures.js";
import { loadTestWeights, MODEL_FILES } from "./test-model.js";

/** A template that writes BOS, then each message as `role:content` on a line, and `assistant:` to prompt the reply. */
export const CHAT_TEMPLATE =
  "{{ bos_token }}{% for m in messages %}{{ m['role'] + ':' + m['content'] + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ 'assistant:' }}{% endif %}";

/**
 * stories260K as a Hugging Face checkpoint with a chat template, converted
 * into `root` and loaded (named "chat", after its checkpoint folder): the default
 * model has no template, and chat needs one.
 */
export async function loadChatTestModel(root: string): Promise<EngineModel> {
  const weights = loadTestWeights();
  const hfDir = join(root, "chat");
  const outDir = join(root, "converted");
  writeHfCheckpoint(hfDir, llama2cAsHfConfig(weights.config), llama2cAsHfTensors(weights), { dtype: "F32", shards: 1 });
  writeTokenizer(hfDir, llama2cTokenizerJson(MODEL_FILES.tokenizerPath, weights.config.vocabSize), { bos_token: "<s>", eos_token: "</s>", chat_template: CHAT_TEMPLATE }, { bos_token_id: 1, eos_token_id: 2 });
  await convertHfCheckpoint(hfDir, outDir);
  return loadModelDir(outDir, { executionProvider: "cpu", intraOpThreads: 1 });
}
