import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

export const ROOT = fileURLToPath(new URL("../../../", import.meta.url));

/** The long flags `kvwarden serve` accepts, read from its own --help. */
export async function serveFlags(): Promise<Set<string>> {
  const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", "src/cli/main.ts", "serve", "--help"], { cwd: ROOT });
  return new Set(stdout.match(/--[a-z][a-z-]*/g));
}

/** The flags in a `serve` argument list, with the value each one takes (undefined for a switch). */
export function flagValues(args: readonly string[]): Map<string, string | undefined> {
  const values = new Map<string, string | undefined>();
  args.forEach((arg, i) => {
    if (arg.startsWith("--")) values.set(arg, args[i + 1]?.startsWith("--") ? undefined : args[i + 1]);
  });
  return values;
}
