import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine, type EngineModel } from "../../src/engine/engine.js";
import { KvwardenClient } from "../../src/client/index.js";
import { KvwardenServer } from "../../src/sidecar/kvwarden-server.js";
import { parseSocketMode } from "../../src/server/unix-socket.js";
import { loadTestModel } from "../support/test-model.js";
import { DEFAULT_TEST_OPTIONS } from "../support/test-server.js";

describe("the Unix socket listener", () => {
  const folder = mkdtempSync(join(tmpdir(), "kvwarden-socket-"));
  let model: EngineModel;
  beforeAll(async () => {
    model = await loadTestModel();
  });
  afterAll(() => rmSync(folder, { recursive: true, force: true }));

  const serve = async (path: string, socketMode?: number) => {
    const server = new KvwardenServer(new Engine(model, DEFAULT_TEST_OPTIONS), { executionProvider: "cpu", version: "test" });
    await server.listen(`unix:${path}`, { socketMode });
    return server;
  };

  it("creates the socket with the configured mode (0660 by default), leaving nothing else behind", async () => {
    for (const [name, mode, expected] of [["default.sock", undefined, 0o660], ["private.sock", 0o600, 0o600]] as const) {
      const path = join(folder, name);
      const server = await serve(path, mode);
      expect(statSync(path).mode & 0o777).toBe(expected);
      const client = new KvwardenClient(`unix:${path}`);
      expect((await client.info()).version).toBe("test");
      client.close();
      await server.close(200);
    }
    expect(readdirSync(folder).filter((name) => name.startsWith(".kvwarden-"))).toEqual([]);
  });

  it("replaces a socket left by an earlier process but refuses to clobber anything else", async () => {
    const stale = join(folder, "stale.sock");
    const old = createServer();
    await new Promise<void>((resolve) => old.listen(stale, resolve));
    const server = await serve(stale, 0o600);
    const client = new KvwardenClient(`unix:${stale}`);
    expect((await client.info()).version).toBe("test");
    client.close();
    await server.close(200);
    old.close();

    const file = join(folder, "precious.txt");
    writeFileSync(file, "keep me");
    const refused = new KvwardenServer(new Engine(model, DEFAULT_TEST_OPTIONS), { executionProvider: "cpu", version: "test" });
    await expect(refused.listen(`unix:${file}`)).rejects.toThrow(/a file is in the way/);
    expect(readFileSync(file, "utf8")).toBe("keep me");
    await refused.close(100);
  });

  it("removes its socket when it stops, but not a successor's that has taken the path", async () => {
    const path = join(folder, "removed.sock");
    await (await serve(path)).close(200);
    expect(existsSync(path)).toBe(false);

    const first = await serve(path);
    const successor = await serve(path);
    await first.close(200);
    expect(statSync(path).isSocket()).toBe(true);
    const client = new KvwardenClient(`unix:${path}`);
    expect((await client.info()).version).toBe("test");
    client.close();
    await successor.close(200);
    expect(existsSync(path)).toBe(false);
  });

  it("parses --socket-mode as octal and refuses modes the owner could not connect with", () => {
    expect(parseSocketMode("0600")).toBe(0o600);
    expect(parseSocketMode("660")).toBe(0o660);
    expect(() => parseSocketMode("rw")).toThrow(/octal/);
    expect(() => parseSocketMode("0400")).toThrow(/owner/);
  });
});
