import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { packagePath } from "../package/package-root.js";
import type { ModelFiles } from "./model-files.js";

/** The test-bed model: stories260K, trained with karpathy/llama2.c (MIT). */
const FILES = {
  model: {
    name: "stories260K.bin",
    sha256: "b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696",
  },
  tokenizer: {
    name: "tok512.bin",
    sha256: "037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312",
  },
};

/** Where the files are looked for, and where a user gets them: for help and errors. */
export const DEFAULT_MODEL_HELP =
  `${FILES.model.name} and ${FILES.tokenizer.name} from ../shared/models beside the checkout or from kvwarden/stories260K in the user cache (\$XDG_CACHE_HOME or ~/.cache), sha256-checked; ` +
  `nothing is downloaded: get both from the karpathy/tinyllamas repository on Hugging Face, folder stories260K`;

/** Folders that may hold the files: the shared folder beside a checkout, then the user cache. */
function candidateFolders(): string[] {
  return [packagePath("..", "shared", "models"), cacheFolder()];
}

function cacheFolder(): string {
  return join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "kvwarden", "stories260K");
}

function sha256(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

/**
 * Finds stories260K where a checkout or a user keeps it, with the sha256 of both
 * files checked. Nothing is downloaded: a sidecar must not reach out at run time.
 */
export async function defaultModelFiles(): Promise<ModelFiles> {
  const folders = candidateFolders();
  for (const folder of folders) {
    const modelPath = join(folder, FILES.model.name);
    const tokenizerPath = join(folder, FILES.tokenizer.name);
    if (existsSync(modelPath) && existsSync(tokenizerPath) && sha256(modelPath) === FILES.model.sha256 && sha256(tokenizerPath) === FILES.tokenizer.sha256) {
      return { modelPath, tokenizerPath };
    }
  }
  throw new Error(
    `the default model stories260K (${FILES.model.name} and ${FILES.tokenizer.name}, llama2.c's test-bed model) is not in ${folders.join(" or ")}; ` +
      `put both files in one of them (from the karpathy/tinyllamas repository on Hugging Face, folder stories260K), or name a model with --model`,
  );
}
