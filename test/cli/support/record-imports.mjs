// Preloaded with `node --import`: records the URL of every module the process loads, one a line, in
// the file named by KVWARDEN_IMPORT_LOG. ES modules (and CommonJS ones they import) are recorded by
// loader hooks, which run on the loader's own thread and append synchronously; CommonJS modules that
// CommonJS code requires, which those hooks do not see on Node 20, are added from the require cache
// when the process exits.
import { appendFileSync } from "node:fs";
import { createRequire, register } from "node:module";
import { pathToFileURL } from "node:url";

const file = process.env.KVWARDEN_IMPORT_LOG;
register("./import-recorder-hooks.mjs", import.meta.url, { data: { file } });

const { cache } = createRequire(import.meta.url);
process.on("exit", () => {
  const required = Object.keys(cache).map((path) => `${pathToFileURL(path).href}\n`);
  appendFileSync(file, required.join(""));
});
