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

describe("the client examples of docs/clients.md", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer(await loadTestModel());
  });
  afterAll(() => t.close());

  it("Python (grpcio): generates stubs, prefills text, decodes a story, evicts, reads stats", async () => {
    await run("bash", ["examples/python/generate-stubs.sh"], { cwd: root, env: { ...process.env, PYTHON } });
    const { stdout, stderr } = await run(PYTHON, ["examples/python/client.py", t.address], { cwd: root });
    expect(stdout.startsWith(STORY_START)).toBe(true);
    const [, before, after] = /evicted with streaming_llm: (\d+) -> (\d+) entries/.exec(stderr) ?? [];
    // 64 generated tokens plus the prompt, down to 16 per head over 5 layers and 4 KV heads.
    expect(Number(before)).toBeGreaterThan(Number(after));
    expect(Number(after)).toBe(16 * 5 * 4);
    expect(stderr).toMatch(/stats: position \d+, \d+ KV bytes, longest head 16 entries/);
    expect((await t.engine.stats()).sequenceCount).toBe(0);
  });

  it("TypeScript (grpc-js + ts-proto): prefills text and decodes a story", async () => {
    const { stdout } = await run("npx", ["tsx", "examples/typescript-client.ts"], { cwd: root, env: { ...process.env, KVWARDEN_ADDRESS: t.address } });
    expect(stdout).toContain(STORY_START);
  });
});
