import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadTestModel } from "../support/test-model.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

const run = promisify(execFile);
const root = fileURLToPath(new URL("../../", import.meta.url));
const STORY_START = "Once upon a time, there was a little girl named Lily.";

describe("the TypeScript client example of docs/clients.md (the Python one: test/clients/python-client.test.ts)", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer(await loadTestModel());
  });
  afterAll(() => t.close());

  it("TypeScript (grpc-js + ts-proto): prefills text and decodes a story", async () => {
    const { stdout } = await run("npx", ["tsx", "examples/typescript-client.ts"], { cwd: root, env: { ...process.env, KVWARDEN_ADDRESS: t.address } });
    expect(stdout).toContain(STORY_START);
  });
});
