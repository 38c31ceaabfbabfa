import { execFile } from "node:child_process";
import { cp, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { greedyStory, STORY_TOKENS } from "../support/greedy-story.js";
import { expectStoryOfEveryVerb } from "./support/story-of-every-verb.js";
import { CLIENT_TOKEN, startProtectedServer } from "./support/protected-server.js";

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const PACKAGE = join(ROOT, "clients/python");
const STUBS = "src/kvwarden_client/v1";
const STORY = join(ROOT, "test/clients/python-consumer/story.py");
const MISUSE = join(ROOT, "test/clients/python-consumer/misuse.py");
const PYRIGHT = join(ROOT, "node_modules/pyright/index.js");

interface PyrightReport {
  generalDiagnostics: { file: string; severity: string; rule?: string; range: { start: { line: number } } }[];
}
/** Debian's Python, whose python3-grpcio and python3-protobuf the venv sees (tools/system-packages.sh). */
const PYTHON = "/usr/bin/python3";

describe("the Python client, pip-installed offline into a virtual environment (docs/clients.md)", () => {
  let folder: string;
  let python: string;
  let sidecar: Awaited<ReturnType<typeof startProtectedServer>>;

  beforeAll(async () => {
    sidecar = await startProtectedServer();
    folder = await mkdtemp(join(tmpdir(), "kvwarden-python-"));
    // --system-site-packages: grpcio and protobuf come from Debian, so nothing is fetched from PyPI.
    await run(PYTHON, ["-m", "venv", "--system-site-packages", join(folder, "venv")]);
    python = join(folder, "venv/bin/python");
    // pip builds a local folder in place: a copy keeps build/ and *.egg-info out of the checkout.
    await cp(PACKAGE, join(folder, "kvwarden-client"), { recursive: true, filter: (path) => !/\/(build|[^/]*\.egg-info)$/.test(path) });
    await run(python, ["-m", "pip", "install", "--quiet", "--no-index", "--no-build-isolation", join(folder, "kvwarden-client")]);
  }, 180_000);
  afterAll(async () => {
    await sidecar?.close();
    if (folder) await rm(folder, { recursive: true, force: true });
  });

  it("imports kvwarden_client from the virtual environment, not from the checkout", async () => {
    const { stdout } = await run(python, ["-c", "import kvwarden_client; print(kvwarden_client.__file__)"], { cwd: folder });
    expect(stdout.trim()).toMatch(new RegExp(`^${folder}/venv/lib/python3\\.\\d+/site-packages/kvwarden_client/__init__\\.py$`));
  });

  it("calls a TLS server with its CA and a token: every verb, each reply equal to the source tree's client's", async () => {
    const { stdout } = await run(python, [STORY, "--token", CLIENT_TOKEN, "--ca", sidecar.caPath, "--tokens", String(STORY_TOKENS), sidecar.address, "python-user"]);
    const reference = await greedyStory(sidecar.address, sidecar.clientOptions);
    expect(JSON.parse(stdout)).toEqual(reference);
    expectStoryOfEveryVerb(reference);
  });

  it.each([
    ["without the token, gets the server's UNAUTHENTICATED status", { "--ca": true }, /^UNAUTHENTICATED: /],
    ["without the CA, a plaintext channel, gets UNAVAILABLE from the TLS server", { "--token": true }, /^UNAVAILABLE: /],
  ])("%s", async (_, kept: Record<string, boolean>, refusal) => {
    const flags = [...(kept["--token"] ? ["--token", CLIENT_TOKEN] : []), ...(kept["--ca"] ? ["--ca", sidecar.caPath] : [])];
    const failed = await run(python, [STORY, ...flags, "--tokens", "1", sidecar.address, "python-stranger"]).then(
      () => ({ code: 0, stderr: "" }),
      (error: { code: number; stderr: string }) => error,
    );
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(refusal);
  });

  it("runs examples/python/client.py: a story, an eviction to 16 entries per head, stats", async () => {
    const { stdout, stderr } = await run(python, [join(ROOT, "examples/python/client.py"), sidecar.address], { env: { ...process.env, KVWARDEN_TOKEN: CLIENT_TOKEN, KVWARDEN_CA: sidecar.caPath } });
    expect(stdout.startsWith("Once upon a time, there was a little girl named Lily.")).toBe(true);
    const [, before, after] = /evicted with streaming_llm: (\d+) -> (\d+) entries/.exec(stderr) ?? [];
    // 64 generated tokens plus the prompt, down to 16 per head over 5 layers and 4 KV heads.
    expect(Number(before)).toBeGreaterThan(Number(after));
    expect(Number(after)).toBe(16 * 5 * 4);
    expect(stderr).toMatch(/stats: position \d+, \d+ KV bytes, longest head 16 entries/);
  });

  it("is typed: pyright finds no error in the installed wrapper or its users, and each misuse in misuse.py", async () => {
    const { stdout } = await run(python, ["-c", "import os, kvwarden_client; print(os.path.dirname(kvwarden_client.__file__))"]);
    const installed = stdout.trim();
    const files = [join(installed, "__init__.py"), join(installed, "client.py"), STORY, join(ROOT, "examples/python/client.py"), MISUSE];
    // pyright exits 1 when it reports errors; its JSON report is on stdout either way.
    const report = await run(process.execPath, [PYRIGHT, "--outputjson", "--pythonpath", python, ...files]).then(
      ({ stdout }) => stdout,
      (error: { stdout: string }) => error.stdout,
    );
    const found = (JSON.parse(report) as PyrightReport).generalDiagnostics.map((d) => `${d.file}:${d.range.start.line + 1} ${d.severity} ${d.rule}`);
    expect(found).toEqual([`${MISUSE}:6 error reportArgumentType`, `${MISUSE}:7 error reportAssignmentType`, `${MISUSE}:8 error reportCallIssue`]);
  }, 120_000);

  it("ships stubs that protoc and grpc_python_plugin regenerate byte for byte", async () => {
    const fresh = await mkdtemp(join(tmpdir(), "kvwarden-python-stubs-"));
    try {
      await run("bash", [join(PACKAGE, "generate-stubs.sh"), fresh]);
      const generated = (await readdir(join(fresh, "kvwarden_client/v1"))).sort();
      expect(generated).toEqual(["kvwarden_pb2.py", "kvwarden_pb2.pyi", "kvwarden_pb2_grpc.py"]);
      for (const name of generated) {
        expect(await readFile(join(fresh, "kvwarden_client/v1", name), "utf8"), name).toBe(await readFile(join(PACKAGE, STUBS, name), "utf8"));
      }
    } finally {
      await rm(fresh, { recursive: true, force: true });
    }
  });
});
