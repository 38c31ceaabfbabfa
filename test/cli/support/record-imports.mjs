// Preloaded with `node --import`: records the URL of every module the ESM loader loads, one a line,
// in the file named by KVWARDEN_IMPORT_LOG. The hooks run on the loader's own thread, so they append
// synchronously: the file is complete whenever the process ends.
import { register } from "node:module";

register("./import-recorder-hooks.mjs", import.meta.url, { data: { file: process.env.KVWARDEN_IMPORT_LOG } });
