// @ts-check
// Plain JavaScript, so that the same file runs as a worker_thread from the sources (vitest) and from dist/.
import { Tokenizer } from "@huggingface/tokenizers";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parentPort, workerData } from "node:worker_threads";

/**
 * Encodes texts with a checkpoint folder's tokenizer.json off the main
 * thread: receives a text, answers its ids (no special tokens added) as an
 * Int32Array whose buffer is transferred, or {error}.
 */

/** @param {string} path */
function readJson(path) {
  return existsSync(path) ? JSON.parse(readFileSync(path, "utf8")) : {};
}

/** @type {string} */
const dir = workerData.dir;
const tokenizer = new Tokenizer(readJson(join(dir, "tokenizer.json")), readJson(join(dir, "tokenizer_config.json")));
const port = /** @type {import("node:worker_threads").MessagePort} */ (parentPort);

port.on("message", (/** @type {string} */ text) => {
  try {
    const ids = Int32Array.from(tokenizer.encode(text, { add_special_tokens: false }).ids);
    port.postMessage(ids, [ids.buffer]);
  } catch (error) {
    port.postMessage({ error: error instanceof Error ? error.message : String(error) });
  }
});
