import { Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { KvwardenClient } from "../../src/client/index.js";
import { Engine, type EngineModel } from "../../src/engine/engine.js";
import type { DecodeResponse } from "../../src/gen/kvwarden/v1/kvwarden.js";
import { KvwardenServer } from "../../src/sidecar/kvwarden-server.js";
import { healthOf } from "../support/health-probe.js";
import { loadTestModel } from "../support/test-model.js";
import { DEFAULT_TEST_OPTIONS } from "../support/test-server.js";

const root = fileURLToPath(new URL("../../", import.meta.url));

/** Reads a Decode stream to its end: the messages, and the status it ended with. */
async function drainStream(stream: AsyncIterable<DecodeResponse>, onMessage: (count: number) => void = () => {}): Promise<{ messages: number; code: number }> {
  let messages = 0;
  try {
    for await (const _ of stream) onMessage(++messages);
    return { messages, code: status.OK };
  } catch (error) {
    return { messages, code: (error as ServiceError).code };
  }
}

const codeOf = (promise: Promise<unknown>) => promise.then(() => status.OK, (error: ServiceError) => error.code);

const until = async (condition: () => Promise<boolean>, timeoutMs = 10_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
};

const LONG_DECODE = { maxNewTokens: 1_000_000, ignoreEos: true };
const OPTIONS = { ...DEFAULT_TEST_OPTIONS, allowPastContext: true, maxSequenceTokens: 1_000_000 };

describe("lifecycle in process", () => {
  let model: EngineModel;

  it("reports NOT_SERVING and answers UNAVAILABLE while the model loads; liveness stays SERVING", async () => {
    let loaded!: (engine: Engine) => void;
    const server = new KvwardenServer(new Promise<Engine>((resolve) => (loaded = resolve)), { executionProvider: "cpu", version: "test" });
    const address = `127.0.0.1:${await server.listen("127.0.0.1:0")}`;
    const client = new KvwardenClient(address);
    expect(await healthOf(address, "kvwarden.v1.KvCache")).toBe("NOT_SERVING");
    expect(await healthOf(address, "")).toBe("NOT_SERVING");
    expect(await healthOf(address, "liveness")).toBe("SERVING");
    expect(await codeOf(client.prefill({ sequenceId: "early", text: "Once" }))).toBe(status.UNAVAILABLE);

    model = await loadTestModel();
    loaded(new Engine(model, OPTIONS));
    await server.ready;
    expect(await healthOf(address, "kvwarden.v1.KvCache")).toBe("SERVING");
    expect(await codeOf(client.prefill({ sequenceId: "early", text: "Once" }))).toBe(status.OK);
    client.close();
    await server.close(500);
  });

  it("drains: NOT_SERVING, new work refused, reads answered, running calls finish or end UNAVAILABLE at the grace", async () => {
    const server = new KvwardenServer(new Engine(model, OPTIONS), { executionProvider: "cpu", version: "test" });
    const address = `127.0.0.1:${await server.listen("127.0.0.1:0")}`;
    const probe = `127.0.0.1:${await server.listenHealth("127.0.0.1:0")}`;
    const client = new KvwardenClient(address);
    await client.prefill({ sequenceId: "long", text: "Once upon a time" });
    await client.prefill({ sequenceId: "short", text: "Once upon a time" });
    await client.prefill({ sequenceId: "late", text: "Once upon a time" });

    let streaming!: () => void;
    const started = new Promise<void>((resolve) => (streaming = resolve));
    const long = drainStream(client.decode({ sequenceId: "long", ...LONG_DECODE }), () => streaming());
    let shortSoFar = 0;
    const short = drainStream(client.decode({ sequenceId: "short", maxNewTokens: 60, ignoreEos: true }), (n) => (shortSoFar = n));
    await started;
    const closing = Date.now();
    expect(shortSoFar).toBeLessThan(60);
    const closed = server.close(2_000);
    const late = drainStream(client.decode({ sequenceId: "late", maxNewTokens: 5 }));

    expect(await healthOf(probe, "kvwarden.v1.KvCache")).toBe("NOT_SERVING");
    expect(await healthOf(probe, "liveness")).toBe("SERVING");
    expect(await codeOf(client.prefill({ sequenceId: "new", text: "Once" }))).toBe(status.UNAVAILABLE);
    const stats = client.stats();
    expect(await codeOf(stats)).toBe(status.OK);
    // A Decode that arrived after draining began is refused; a running one finishes, or is cut off at the grace.
    expect(await late).toEqual({ messages: 0, code: status.UNAVAILABLE });
    expect(await short).toEqual({ messages: 60, code: status.OK });
    const ended = await long;
    expect(ended.code).toBe(status.UNAVAILABLE);
    expect(ended.messages).toBeGreaterThan(10);
    await closed;
    expect(Date.now() - closing).toBeLessThan(3_000);
    client.close();
  });
});

describe("the serve command", () => {
  const folder = mkdtempSync(join(tmpdir(), "kvwarden-lifecycle-"));
  afterAll(() => rmSync(folder, { recursive: true, force: true }));

  it("serves the data plane on a Unix socket and health on TCP; on SIGTERM drains mid-Decode and exits 0", async () => {
    const socket = join(folder, "kvwarden.sock");
    const child = spawn(
      process.execPath,
      ["--import", "tsx", "src/cli/main.ts", "serve", "--listen", `unix:${socket}`, "--health-listen", "127.0.0.1:0", "--shutdown-grace", "2", "--allow-past-context"],
      { cwd: root, stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, OTEL_TRACES_EXPORTER: "none" } },
    );
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    const lines = () =>
      stderr
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
    try {
      await until(async () => lines().some((line) => line.msg === "serving"), 30_000);
      const probe = `127.0.0.1:${lines().find((line) => line.msg === "serving")!.healthPort}`;
      expect(await healthOf(probe, "kvwarden.v1.KvCache")).toBe("SERVING");
      expect(statSync(socket).mode & 0o777).toBe(0o660);

      const client = new KvwardenClient(`unix:${socket}`);
      const metadata = new Metadata();
      metadata.set("traceparent", "00-5b8efff798038103d269b633813fc60c-eee19b7ec3c1b174-01");
      const prompt = "Once upon a time, in a quiet village";
      await client.prefill({ sequenceId: "story", text: prompt }, { metadata });
      let streaming!: () => void;
      const started = new Promise<void>((resolve) => (streaming = resolve));
      const stream = drainStream(client.decode({ sequenceId: "story", ...LONG_DECODE }, { metadata }), () => streaming());
      await started;

      child.kill("SIGTERM");
      await until(async () => (await healthOf(probe, "kvwarden.v1.KvCache").catch(() => "gone")) === "NOT_SERVING");
      expect(await codeOf(client.prefill({ sequenceId: "late", text: "Once" }))).toBe(status.UNAVAILABLE);
      const ended = await stream;
      expect(ended.code).toBe(status.UNAVAILABLE);
      expect(ended.messages).toBeGreaterThan(0);
      client.close();
      expect(await exited).toBe(0);

      // One JSON line per call, with the caller's trace id and no prompt text.
      const calls = lines().filter((line) => line.msg === "rpc");
      expect(calls.map((line) => [line.method, line.code])).toEqual([
        ["kvwarden.v1.KvCache/Prefill", "OK"],
        ["kvwarden.v1.KvCache/Prefill", "UNAVAILABLE"],
        ["kvwarden.v1.KvCache/Decode", "UNAVAILABLE"],
      ]);
      expect(calls[0]).toMatchObject({ trace_id: "5b8efff798038103d269b633813fc60c", sequence_id: "story", level: "info" });
      expect(calls[0].input_tokens).toBeGreaterThan(0);
      expect(calls[2]).toMatchObject({ trace_id: "5b8efff798038103d269b633813fc60c", output_tokens: ended.messages });
      expect(stderr).not.toContain(prompt);
      expect(lines().at(-1)).toMatchObject({ msg: "stopped" });
    } finally {
      child.kill("SIGKILL");
    }
  });
});
