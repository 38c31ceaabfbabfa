import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadTestModel } from "../support/test-model.js";
import { startTestServer, type TestServer } from "../support/test-server.js";

const run = promisify(execFile);
const root = fileURLToPath(new URL("../../", import.meta.url));
const BUF = `${root}node_modules/.bin/buf`;

/** The README's one call: the request body, the method path, and the output it shows. */
function readmeCall(): { body: string; method: string; output: unknown } {
  const readme = readFileSync(`${root}README.md`, "utf8");
  const call = /```sh\n(npx buf curl[^`]*)```\s*```json\n([^`]*)```/.exec(readme);
  if (!call) throw new Error("README.md has no `npx buf curl` block followed by its JSON output");
  const body = /-d '([^']*)'/.exec(call[1])?.[1];
  const method = /http:\/\/127\.0\.0\.1:50051\/(\S+)/.exec(call[1])?.[1];
  if (!body || !method) throw new Error("the README's buf curl call lacks -d '...' or the 127.0.0.1:50051 URL");
  return { body, method, output: JSON.parse(call[2]) };
}

describe("the README's first call", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer(await loadTestModel());
  });
  afterAll(() => t.close());

  it("gives, through reflection and the proto's snake_case field names, exactly the output the README shows", async () => {
    const { body, method, output } = readmeCall();
    const { stdout } = await run(BUF, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", "-d", body, `http://${t.address}/${method}`]);
    expect(JSON.parse(stdout)).toEqual(output);
  });
});
