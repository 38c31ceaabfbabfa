import { execFile } from "node:child_process";
import { cp, mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { greedyStory, STORY_TOKENS } from "../support/greedy-story.js";
import { expectStoryOfEveryVerb } from "./support/story-of-every-verb.js";
import { CLIENT_TOKEN, startProtectedServer } from "./support/protected-server.js";

const run = promisify(execFile);
const CLIENT = fileURLToPath(new URL("../../clients/go/", import.meta.url));
const STUBS = "kvwardenv1";

describe("the Go client, installed into a GOPATH and built offline with Debian's Go packages (docs/clients.md)", () => {
  let gopath: string;
  let story: string;
  let sidecar: Awaited<ReturnType<typeof startProtectedServer>>;

  beforeAll(async () => {
    sidecar = await startProtectedServer();
    // GOPATH mode resolves kvwarden/clients/go/... under $GOPATH/src; grpc and protobuf come from Debian's /usr/share/gocode.
    gopath = await mkdtemp(join(tmpdir(), "kvwarden-gopath-"));
    await mkdir(join(gopath, "src/kvwarden/clients"), { recursive: true });
    await cp(CLIENT, join(gopath, "src/kvwarden/clients/go"), { recursive: true });
    story = join(gopath, "bin/kvwarden-story");
    const env = { ...process.env, GO111MODULE: "off", GOPATH: `${gopath}:/usr/share/gocode`, GOPROXY: "off", GOFLAGS: "" };
    await run("go", ["build", "-o", story, "kvwarden/clients/go/cmd/kvwarden-story"], { cwd: gopath, env });
    await run("go", ["vet", "kvwarden/clients/go/..."], { cwd: gopath, env });
  }, 300_000);
  afterAll(async () => {
    await sidecar?.close();
    if (gopath) await rm(gopath, { recursive: true, force: true });
  });

  it("calls a TLS server with its CA and a token: every verb, each reply equal to the source tree's client's", async () => {
    const { stdout } = await run(story, ["-token", CLIENT_TOKEN, "-ca", sidecar.caPath, "-tokens", String(STORY_TOKENS), sidecar.address, "go-user"]);
    const reference = await greedyStory(sidecar.address, sidecar.clientOptions);
    expect(JSON.parse(stdout)).toEqual(reference);
    expectStoryOfEveryVerb(reference);
  });

  it.each([
    ["without the token, gets the server's UNAUTHENTICATED status", { "-ca": true }, /^rpc error: code = Unauthenticated desc = /],
    ["without the CA, a plaintext channel, gets UNAVAILABLE from the TLS server", { "-token": true }, /^rpc error: code = Unavailable desc = /],
  ])("%s", async (_, kept: Record<string, boolean>, refusal) => {
    const flags = [...(kept["-token"] ? ["-token", CLIENT_TOKEN] : []), ...(kept["-ca"] ? ["-ca", sidecar.caPath] : [])];
    const failed = await run(story, [...flags, sidecar.address, "go-stranger"]).then(
      () => ({ code: 0, stderr: "" }),
      (error: { code: number; stderr: string }) => error,
    );
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(refusal);
  });

  it("ships stubs that protoc, protoc-gen-go and protoc-gen-go-grpc regenerate byte for byte", async () => {
    const fresh = await mkdtemp(join(tmpdir(), "kvwarden-go-stubs-"));
    try {
      await run("bash", [join(CLIENT, "generate-stubs.sh"), fresh]);
      const names = await readdir(join(fresh, STUBS));
      expect(names.sort()).toEqual((await readdir(join(CLIENT, STUBS))).sort());
      for (const name of names) {
        expect(await readFile(join(fresh, STUBS, name), "utf8"), name).toBe(await readFile(join(CLIENT, STUBS, name), "utf8"));
      }
    } finally {
      await rm(fresh, { recursive: true, force: true });
    }
  });
});
