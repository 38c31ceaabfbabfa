import { execFile, spawn, type ChildProcess } from "node:child_process";
import { copyFile, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { installPackedPackage } from "../support/install-packed-package.js";
import { greedyStory, STORY_TOKENS } from "../support/greedy-story.js";
import { expectStoryOfEveryVerb } from "./support/story-of-every-verb.js";
import { MODEL_FILES } from "../support/test-model.js";

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const TSC = join(ROOT, "node_modules/typescript/bin/tsc");

/** `kvwarden serve` from the installed package's bin, on an ephemeral loopback port. */
function serveFromInstalledBin(folder: string): Promise<{ child: ChildProcess; address: string }> {
  const child = spawn(join(folder, "node_modules/.bin/kvwarden"), ["serve", "--model", MODEL_FILES.modelPath, "--tokenizer", MODEL_FILES.tokenizerPath, "--listen", "127.0.0.1:0"], {
    cwd: folder,
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, OTEL_TRACES_EXPORTER: "none" },
  });
  return new Promise((resolve, reject) => {
    let stderr = "";
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
      const serving = stderr.split("\n").find((line) => line.includes('"msg":"serving"'));
      if (serving) resolve({ child, address: `127.0.0.1:${(JSON.parse(serving) as { port: number }).port}` });
    });
    child.on("exit", (code) => reject(new Error(`the installed kvwarden serve exited with ${code}: ${stderr}`)));
  });
}

describe("the npm package, packed and installed into an empty folder (docs/clients.md)", () => {
  let folder: string;
  let server: { child: ChildProcess; address: string };

  beforeAll(async () => {
    ({ folder } = await installPackedPackage());
    server = await serveFromInstalledBin(folder);
  }, 180_000);
  afterAll(async () => {
    server?.child.kill("SIGTERM");
    if (folder) await rm(folder, { recursive: true, force: true });
  });

  it("ships built JavaScript, declarations and the proto, not the TypeScript sources", async () => {
    const installed = JSON.parse(await readFile(join(folder, "node_modules/kvwarden/package.json"), "utf8")) as Record<string, unknown>;
    expect(installed.exports).toEqual({
      "./client": { types: "./dist/src/client/index.d.ts", default: "./dist/src/client/index.js" },
      "./package.json": "./package.json",
    });
    for (const shipped of ["dist/src/client/index.js", "dist/src/client/index.d.ts", "dist/src/gen/kvwarden/v1/kvwarden.d.ts", "proto/kvwarden/v1/kvwarden.proto"]) {
      await expect(readFile(join(folder, "node_modules/kvwarden", shipped))).resolves.toBeInstanceOf(Buffer);
    }
    await expect(readFile(join(folder, "node_modules/kvwarden/src/client/index.ts"))).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("type-checks a TypeScript user against the installed declarations, then calls the installed bin's server: every verb, each reply equal to the source tree's client's", async () => {
    await copyFile(join(ROOT, "test/clients/npm-consumer/call-server.mts"), join(folder, "call-server.mts"));
    const tsconfig = { compilerOptions: { target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", strict: true, skipLibCheck: true, types: [] }, files: ["call-server.mts"] };
    await writeFile(join(folder, "tsconfig.json"), JSON.stringify(tsconfig));
    await run(process.execPath, [TSC, "-p", "."], { cwd: folder });

    const { stdout } = await run(process.execPath, ["call-server.mjs", server.address, "npm-user", String(STORY_TOKENS)], { cwd: folder });
    const reference = await greedyStory(server.address);
    expect(JSON.parse(stdout)).toEqual(reference);
    expectStoryOfEveryVerb(reference);
  });
});
