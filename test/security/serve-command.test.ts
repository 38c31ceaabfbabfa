import { status } from "@grpc/grpc-js";
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { KvwardenClient } from "../../src/client/index.js";
import { statusOf } from "../support/test-server.js";
import { clientOf } from "./support/secure-server.js";
import { spawnServe } from "../support/serve-process.js";

const OLD = "old-token-0123456789abcdef";
const NEW = "new-token-0123456789abcdef";

describe("kvwarden serve with authentication", () => {
  const folder = mkdtempSync(join(tmpdir(), "kvwarden-serve-auth-"));
  afterAll(() => rmSync(folder, { recursive: true, force: true }));

  it("serves a private socket to token holders, enforces quota flags, and re-reads the tokens on SIGHUP", async () => {
    const socket = join(folder, "kvwarden.sock");
    const tokens = join(folder, "tokens");
    writeFileSync(tokens, `# test\n${OLD} alice\n`);
    const args = ["--listen", `unix:${socket}`, "--socket-mode", "0600", "--auth-tokens", tokens, "--tenant-max-sequences", "1", "--max-request-tokens", "64"];
    const serve = spawnServe(args);
    const { child, exited } = serve;
    const logged = (msg: string) =>
      new Promise<void>((resolve, reject) => {
        const deadline = Date.now() + 30_000;
        const poll = () => (serve.stderr.includes(`"msg":"${msg}"`) ? resolve() : Date.now() > deadline ? reject(new Error(`no '${msg}' in ${serve.stderr}`)) : setTimeout(poll, 20));
        poll();
      });
    const clients: KvwardenClient[] = [];
    const client = (token?: string) => {
      const made = clientOf(`unix:${socket}`, token);
      clients.push(made);
      return made;
    };
    try {
      await logged("serving");
      expect(serve.stderr).toContain('"auth":"tokens"');
      expect(statSync(socket).mode & 0o777).toBe(0o600);

      const [old, anonymous] = [client(OLD), client()];
      await old.prefill({ sequenceId: "a", tokenIds: [1, 403] });
      expect((await statusOf(anonymous.stats())).code).toBe(status.UNAUTHENTICATED);
      expect((await statusOf(old.prefill({ sequenceId: "b", tokenIds: [1] }))).code).toBe(status.RESOURCE_EXHAUSTED);
      expect((await old.info()).limits).toMatchObject({ tenantMaxSequences: 1, maxRequestTokens: 64 });

      writeFileSync(tokens, `${NEW} alice\n`);
      child.kill("SIGHUP");
      await logged("reloaded auth tokens");
      expect((await statusOf(old.stats())).code).toBe(status.UNAUTHENTICATED);
      // The same tenant, so the same sequences.
      const renewed = client(NEW);
      expect((await renewed.stats()).sequences.map((s) => s.sequenceId)).toEqual(["a"]);

      for (const made of clients) made.close();
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
      expect(existsSync(socket)).toBe(false);
      expect(serve.stderr).not.toContain(OLD);
      expect(serve.stderr).not.toContain(NEW);
    } finally {
      child.kill("SIGKILL");
    }
  });
});
