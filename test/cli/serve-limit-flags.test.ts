import { mkdtempSync, rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { KvwardenClient } from "../../src/client/index.js";
import { spawnServe, type ServeProcess } from "../support/serve-process.js";

const PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/** `kvwarden serve` on a Unix socket with `flags`, once it says it is serving. */
async function serveOn(socket: string, flags: string[]): Promise<ServeProcess> {
  const serve = spawnServe(["--listen", `unix:${socket}`, ...flags]);
  const deadline = Date.now() + 30_000;
  while (!serve.stderr.includes('"msg":"serving"')) {
    if (Date.now() > deadline) throw new Error(`not serving: ${serve.stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return serve;
}

/** A connection that sends the HTTP/2 preface and then never answers: resolves when the server closes it. */
function muteConnectionClosed(socket: string): Promise<void> {
  const connection: Socket = connect(socket, () => connection.write(PREFACE));
  connection.resume();
  return new Promise((resolve) => connection.on("close", () => resolve()));
}

describe("serve's limit flags (docs/configuration.md, docs/limits.md)", () => {
  const folder = mkdtempSync(join(tmpdir(), "kvwarden-limit-flags-"));
  afterAll(() => rmSync(folder, { recursive: true, force: true }));

  it("reports --max-prompt-bytes and --max-queue in Info, and closes a connection idle for --idle-timeout", async () => {
    const socket = join(folder, "idle.sock");
    const serve = await serveOn(socket, ["--max-prompt-bytes", "4KiB", "--max-queue", "3", "--idle-timeout", "1", "--keepalive-interval", "3600"]);
    const client = new KvwardenClient(`unix:${socket}`);
    try {
      expect((await client.info()).limits).toMatchObject({ maxPromptBytes: 4096n, maxQueue: 3 });
      await muteConnectionClosed(socket);
    } finally {
      client.close();
      serve.child.kill("SIGTERM");
      expect(await serve.exited).toBe(0);
    }
  });

  it("closes a connection whose peer stops answering the pings of --keepalive-interval within --keepalive-timeout", async () => {
    const socket = join(folder, "keepalive.sock");
    const serve = await serveOn(socket, ["--idle-timeout", "3600", "--keepalive-interval", "1", "--keepalive-timeout", "1"]);
    try {
      await muteConnectionClosed(socket);
    } finally {
      serve.child.kill("SIGTERM");
      expect(await serve.exited).toBe(0);
    }
  });

  it("keeps the defaults in Info when the flags are absent: 1 MiB prompts, no queue", async () => {
    const socket = join(folder, "defaults.sock");
    const serve = await serveOn(socket, []);
    const client = new KvwardenClient(`unix:${socket}`);
    try {
      expect((await client.info()).limits).toMatchObject({ maxPromptBytes: BigInt(2 ** 20), maxQueue: 0 });
    } finally {
      client.close();
      serve.child.kill("SIGTERM");
      expect(await serve.exited).toBe(0);
    }
  });
});
