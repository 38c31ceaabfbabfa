import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { MODEL_FILES } from "../support/test-model.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const RECORDER = fileURLToPath(new URL("./support/record-imports.mjs", import.meta.url));

/** The eval harness's chart and progress libraries: `kvwarden serve` must not load them (issue 18 point 8). */
const EVAL_ONLY = ["vega", "vega-lite", "cli-progress"];
/** Those and vega's own packages (vega-util, vega-scale, ...). */
const isEvalOnly = (name: string) => EVAL_ONLY.includes(name) || name.startsWith("vega-");

const folder = mkdtempSync(join(tmpdir(), "kvwarden-imports-"));
let runs = 0;

/**
 * Runs `node --import tsx <recorder> ARGS` from the repository root until it exits (or, with `until`,
 * until its stderr matches it, then SIGTERM), and returns the packages under node_modules whose modules
 * the ESM loader loaded, with the process's stderr.
 */
async function loadedPackages(args: readonly string[], until?: RegExp): Promise<{ packages: Set<string>; modules: string[]; stderr: string; code: number | null }> {
  const log = join(folder, `imports-${++runs}.txt`);
  const child = spawn(process.execPath, ["--import", "tsx", "--import", RECORDER, ...args], {
    cwd: ROOT,
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, OTEL_TRACES_EXPORTER: "none", KVWARDEN_IMPORT_LOG: log },
  });
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
    if (until?.test(stderr)) child.kill("SIGTERM");
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), 50_000);
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve)); // stderr read to its end
  clearTimeout(timer);
  const modules = readFileSync(log, "utf8").split("\n").filter((line) => line !== "");
  const packages = new Set(modules.flatMap((url) => [...url.matchAll(/\/node_modules\/((?:@[^/]+\/)?[^/]+)\//g)].map((match) => match[1]).slice(-1)));
  return { packages, modules, stderr, code };
}

afterAll(() => rmSync(folder, { recursive: true, force: true }));

describe("what `kvwarden serve` loads", () => {
  it("the recorder sees the eval libraries when the eval's chart and progress modules are imported", async () => {
    const { packages, code } = await loadedPackages(["--input-type=module", "-e", 'await import("./src/eval/chart.ts"); await import("./src/eval/progress.ts");']);
    expect(code).toBe(0);
    for (const name of EVAL_ONLY) expect(packages).toContain(name);
  });

  it("serves the model without loading vega, vega-lite or cli-progress", async () => {
    const { packages, modules, stderr } = await loadedPackages(
      ["src/cli/main.ts", "serve", "--listen", "127.0.0.1:0", "--model", MODEL_FILES.modelPath, "--tokenizer", MODEL_FILES.tokenizerPath],
      /"msg":"serving"/,
    );
    expect(stderr).toMatch(/"msg":"serving"/);
    // It did load what serving needs, through the same recorder.
    expect(modules.some((url) => url.endsWith("/src/sidecar/kvwarden-server.ts"))).toBe(true);
    expect(packages).toContain("@grpc/grpc-js");
    expect(packages).toContain("onnxruntime-node");
    expect([...packages].filter(isEvalOnly)).toEqual([]);
  });

  it("loads the eval command's modules without its chart and progress libraries until an eval runs", async () => {
    const { packages, code } = await loadedPackages(["--input-type=module", "-e", 'const { evalCommand } = await import("./src/cli/eval-command.ts"); evalCommand("0");']);
    expect(code).toBe(0);
    expect([...packages].filter(isEvalOnly)).toEqual([]);
  });
});
