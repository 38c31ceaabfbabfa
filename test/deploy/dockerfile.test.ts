import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { flagValues, ROOT, serveFlags } from "./support/serve-flags.js";

interface Instruction {
  keyword: string;
  args: string;
}

/** Dockerfile instructions, continuation lines joined, comments dropped. */
function instructions(text: string): Instruction[] {
  return text
    .replace(/\\\n/g, " ")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"))
    .map((line) => {
      const [keyword, ...rest] = line.split(/\s+/);
      return { keyword: keyword.toUpperCase(), args: rest.join(" ") };
    });
}

describe("deploy/Dockerfile", () => {
  const steps = instructions(readFileSync(join(ROOT, "deploy/Dockerfile"), "utf8"));
  const all = (keyword: string) => steps.filter((step) => step.keyword === keyword).map((step) => step.args);
  let flags: Set<string>;
  beforeAll(async () => {
    flags = await serveFlags();
  });

  it("builds in one stage and runs in another", () => {
    const froms = all("FROM");
    expect(froms).toHaveLength(2);
    expect(froms[0]).toMatch(/ AS build$/);
    expect(froms[1]).toBe("${RUNTIME_IMAGE}");
    expect(all("ARG")).toContain("RUNTIME_IMAGE=${NODE_IMAGE}");
    expect(all("ARG").find((arg) => arg.startsWith("NODE_IMAGE="))).toMatch(/^NODE_IMAGE=node:20/);
  });

  it("installs the CPU provider by default and documents the CUDA build argument", () => {
    expect(all("ARG")).toContain("ONNXRUNTIME_NODE_INSTALL=skip");
    expect(all("ENV")).toContain("ONNXRUNTIME_NODE_INSTALL=${ONNXRUNTIME_NODE_INSTALL}");
    expect(readFileSync(join(ROOT, "deploy/Dockerfile"), "utf8")).toContain("--build-arg ONNXRUNTIME_NODE_INSTALL=cuda12");
    // package.json's allowScripts denies the script to npm 11, so a CUDA build runs it itself.
    expect(all("RUN")).toContain('npm ci && if [ "$ONNXRUNTIME_NODE_INSTALL" != skip ]; then node node_modules/onnxruntime-node/script/install.js; fi');
  });

  it("copies files that exist, and copies from the build stage only", () => {
    for (const copy of all("COPY")) {
      const words = copy.split(" ");
      if (words[0].startsWith("--from=")) {
        expect(words[0]).toBe("--from=build");
        continue;
      }
      for (const source of words.slice(0, -1)) expect(existsSync(join(ROOT, source)), source).toBe(true);
    }
  });

  it("starts the compiled CLI as a non-root user, serving on a socket with health and metrics on the exposed ports", () => {
    const tsconfig = JSON.parse(readFileSync(join(ROOT, "tsconfig.json"), "utf8"));
    expect(tsconfig.compilerOptions).toMatchObject({ outDir: "dist", rootDir: "." });
    expect(JSON.parse(all("ENTRYPOINT")[0])).toEqual(["node", "dist/src/cli/main.js"]);
    const command: string[] = JSON.parse(all("CMD")[0]);
    expect(command[0]).toBe("serve");
    const values = flagValues(command.slice(1));
    for (const flag of values.keys()) expect(flags, flag).toContain(flag);
    expect(values.get("--listen")).toMatch(/^unix:\//);
    const exposed = all("EXPOSE")[0].split(" ");
    expect(exposed).toContain(values.get("--health-listen")!.split(":")[1]);
    expect(exposed).toContain(values.get("--metrics-listen")!.split(":")[1]);
    expect(all("USER")[0]).toMatch(/^[1-9]\d*(:\d+)?$/);
  });
});
