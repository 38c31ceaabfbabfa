import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadTestModel } from "../support/test-model.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

const run = promisify(execFile);
const root = fileURLToPath(new URL("../../", import.meta.url));
/** Debian's Python, where python3-grpcio lives (.ci/run installs it). */
const PYTHON = "/usr/bin/python3";
const STORY_START = "Once upon a time, there was a little girl named Lily.";

describe("the README's client examples", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer(await loadTestModel());
  });
  afterAll(() => t.close());

  it("Python (grpcio): generates stubs, prefills text and decodes a story", async () => {
    await run("bash", ["examples/python/generate-stubs.sh"], { cwd: root, env: { ...process.env, PYTHON } });
    const { stdout } = await run(PYTHON, ["examples/python/client.py", t.address], { cwd: root });
    expect(stdout.startsWith(STORY_START)).toBe(true);
    expect((await t.engine.stats()).sequenceCount).toBe(0);
  });

  it("TypeScript (grpc-js + ts-proto): prefills text and decodes a story", async () => {
    const { stdout } = await run("npx", ["tsx", "examples/typescript-client.ts"], { cwd: root, env: { ...process.env, KVWARDEN_ADDRESS: t.address } });
    expect(stdout).toContain(STORY_START);
  });
});
