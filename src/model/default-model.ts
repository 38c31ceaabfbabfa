import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { ModelFiles } from "./load-model.js";

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
const PUBLIC_LOCATION = "https://huggingface.co/karpathy/tinyllamas/resolve/main/stories260K";

/** Folders that may already hold the files: the shared folder beside a checkout, then the user cache. */
function candidateFolders(): string[] {
  const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", ...(import.meta.url.includes("/dist/") ? [".."] : []));
  return [join(projectRoot, "..", "shared", "models"), cacheFolder()];
}

function cacheFolder(): string {
  return join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "kvwarden", "stories260K");
}

function sha256(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

/**
 * Finds stories260K locally, or downloads it from its public location into the
 * user cache; either way the sha256 of both files is checked.
 */
export async function defaultModelFiles(): Promise<ModelFiles> {
  for (const folder of candidateFolders()) {
    const modelPath = join(folder, FILES.model.name);
    const tokenizerPath = join(folder, FILES.tokenizer.name);
    if (existsSync(modelPath) && existsSync(tokenizerPath) && sha256(modelPath) === FILES.model.sha256 && sha256(tokenizerPath) === FILES.tokenizer.sha256) {
      return { modelPath, tokenizerPath };
    }
  }
  const folder = cacheFolder();
  mkdirSync(folder, { recursive: true });
  for (const file of Object.values(FILES)) {
    const url = `${PUBLIC_LOCATION}/${file.name}`;
    const response = await fetch(url);
    if (!response.ok) throw new Error(`downloading ${url}: HTTP ${response.status}`);
    const bytes = Buffer.from(await response.arrayBuffer());
    const digest = createHash("sha256").update(bytes).digest("hex");
    if (digest !== file.sha256) throw new Error(`${url}: sha256 ${digest} does not match the expected ${file.sha256}`);
    writeFileSync(join(folder, file.name), bytes);
  }
  return { modelPath: join(folder, FILES.model.name), tokenizerPath: join(folder, FILES.tokenizer.name) };
}
