import { createHash } from "node:crypto";
import { createReadStream, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { defaultModelFiles } from "./default-model.js";
import type { ModelSource } from "./load-model.js";

/**
 * A sha256 over the files a model source names (a folder's files, or a llama2.c checkpoint and its
 * tokenizer, or the default model's), in a fixed order: what the KV store's model fingerprint takes
 * as the weights' digest (docs/kv-store.md, "Key layout"). Reads the files once, streaming.
 */
export async function weightsDigest(source: ModelSource): Promise<string> {
  const files =
    source && "dir" in source
      ? readdirSync(source.dir)
          .sort()
          .map((name) => join(source.dir, name))
          .filter((path) => statSync(path).isFile())
      : Object.values(source?.files ?? (await defaultModelFiles()));
  const hash = createHash("sha256");
  for (const path of files) {
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  }
  return hash.digest("hex");
}
