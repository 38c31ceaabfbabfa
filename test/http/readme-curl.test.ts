import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EngineModel } from "../../src/engine/engine.js";
import { packagePath } from "../../src/package/package-root.js";
import { loadTestModel } from "../support/test-model.js";
import { startHttpTestServer, type HttpTestServer } from "../support/http-test-server.js";

const run = promisify(execFile);

/** The README's HTTP call: curl's arguments, and the text and usage the README says it answers. */
function readmeCurl(): { args: string[]; text: string; promptTokens: number; completionTokens: number } {
  const readme = readFileSync(packagePath("README.md"), "utf8");
  const found = /```sh\ncurl (-s) (http:\/\/127\.0\.0\.1:8080\/v1\/completions) -H '([^']*)' \\\n\s*-d '([^']*)'\n```\s*answers `"text": ("[^`]*")` with\s*`"usage": \{"prompt_tokens": (\d+), "completion_tokens": (\d+)/.exec(readme);
  if (!found) throw new Error("README.md has no `curl .../v1/completions` block followed by the answer's text and usage");
  const [, silent, url, header, body, text, promptTokens, completionTokens] = found;
  return { args: [silent, url, "-H", header, "-d", body], text: JSON.parse(text), promptTokens: Number(promptTokens), completionTokens: Number(completionTokens) };
}

describe("the README's HTTP call", () => {
  let model: EngineModel;
  let sidecar: HttpTestServer;
  beforeAll(async () => {
    model = await loadTestModel();
    sidecar = await startHttpTestServer(model);
  });
  afterAll(async () => {
    await sidecar?.close();
    await model?.runner.release();
  });

  it("answers curl with exactly the text and usage the README shows", async () => {
    const { args, text, promptTokens, completionTokens } = readmeCurl();
    args[1] = args[1].replace("http://127.0.0.1:8080", sidecar.baseUrl);
    const { stdout } = await run("curl", args);
    const reply = JSON.parse(stdout);
    expect(reply.object).toBe("text_completion");
    expect(reply.choices[0].text).toBe(text);
    expect(reply.usage).toMatchObject({ prompt_tokens: promptTokens, completion_tokens: completionTokens });
  });
});
