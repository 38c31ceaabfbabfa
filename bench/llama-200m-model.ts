import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { convertHfCheckpoint } from "../src/model/conversion/convert.js";
import { loadModelDir } from "../src/model/load-model.js";
import type { EngineModel } from "../src/model/engine-model.js";
import { llama200M } from "./llama-200m.js";
import { writeRandomCheckpoint } from "./random-checkpoint.js";

/** The ~200M bench Llama (random weights, `layers` of its 12), converted float32 into a temporary folder. */
export interface Llama200MFiles {
  /** The converted folder: load it once per engine, each load its own onnxruntime session. */
  readonly dir: string;
  /** The Hugging Face folder it was converted from (what the GGUF writer reads). */
  readonly hfDir: string;
  load(threads: number): Promise<EngineModel>;
  remove(): void;
}

export async function llama200MFiles(layers: number, seed = 200): Promise<Llama200MFiles> {
  const root = mkdtempSync(join(tmpdir(), "kvwarden-bench-200m-"));
  try {
    writeRandomCheckpoint(join(root, "hf"), llama200M(layers), seed);
    await convertHfCheckpoint(join(root, "hf"), join(root, "float32"));
  } catch (error) {
    rmSync(root, { recursive: true, force: true });
    throw error;
  }
  const dir = join(root, "float32");
  return {
    dir,
    hfDir: join(root, "hf"),
    load: (threads) => loadModelDir(dir, { executionProvider: "cpu", intraOpThreads: threads }),
    remove: () => rmSync(root, { recursive: true, force: true }),
  };
}
