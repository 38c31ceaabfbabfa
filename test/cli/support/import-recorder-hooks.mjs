// Module customization hooks (node:module register) that append each loaded module's URL to a file.
import { appendFileSync } from "node:fs";

let file;

export function initialize(data) {
  file = data.file;
  if (!file) throw new Error("KVWARDEN_IMPORT_LOG names no file to record imports in");
}

export async function load(url, context, nextLoad) {
  appendFileSync(file, `${url}\n`);
  return nextLoad(url, context);
}
