import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { packagePath } from "../../src/package/package-root.js";

const pkg = JSON.parse(readFileSync(packagePath("package.json"), "utf8"));
const lock = JSON.parse(readFileSync(packagePath("package-lock.json"), "utf8"));
const npmMajor = Number(execFileSync("npm", ["--version"], { encoding: "utf8" }).split(".")[0]);

describe("npm's view of the project (issue 21, first contact)", () => {
  it("prints no warning about the project's configuration", () => {
    // `.npmrc` once held onnxruntime-node's own switch, which npm 11 warns about on every command.
    expect(existsSync(packagePath(".npmrc"))).toBe(false);
    const run = spawnSync("npm", ["pkg", "get", "name"], { cwd: packagePath(), encoding: "utf8", env: { ...process.env, npm_config_onnxruntime_node_install: undefined } });
    expect(run.status).toBe(0);
    expect(run.stdout.trim()).toBe('"kvwarden"');
    expect(run.stderr).not.toMatch(/Unknown (project|env) config/);
  });

  it("decides every dependency's install script in allowScripts, denying onnxruntime-node's CUDA download", () => {
    const withScripts = Object.entries<{ hasInstallScript?: boolean }>(lock.packages)
      .filter(([path, entry]) => path !== "" && entry.hasInstallScript)
      .map(([path]) => path.split("node_modules/").at(-1)!);
    expect(new Set(Object.keys(pkg.allowScripts))).toEqual(new Set(withScripts));
    expect(pkg.allowScripts["onnxruntime-node"]).toBe(false);
  });

  // `npm install-scripts` came with npm 11's allowScripts; older npm runs every script (the Makefile sets ONNXRUNTIME_NODE_INSTALL=skip).
  it.runIf(npmMajor >= 11)("leaves npm no install script to review", () => {
    const listed = execFileSync("npm", ["install-scripts", "ls"], { cwd: packagePath(), encoding: "utf8" });
    expect(listed.trim()).toBe("No packages with unreviewed install scripts.");
  });
});
