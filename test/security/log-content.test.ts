import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { Engine, type EngineModel } from "../../src/engine/engine.js";
import { KvwardenClient } from "../../src/client/index.js";
import { KvwardenServer } from "../../src/sidecar/kvwarden-server.js";
import type { LogFields } from "../../src/telemetry/json-log.js";
import { loadTestModel } from "../support/test-model.js";
import { decodeAll, DEFAULT_TEST_OPTIONS } from "../support/test-server.js";

const PROMPT = "Once upon a time, in a quiet village";

describe("what the call log holds", () => {
  let model: EngineModel;
  let close = async () => {};
  beforeAll(async () => {
    model = await loadTestModel();
  });
  afterEach(() => close());

  /** Runs a Prefill and a Decode; returns the log lines and the generated text. */
  const converse = async (logContent: boolean) => {
    const lines: LogFields[] = [];
    const server = new KvwardenServer(new Engine(model, DEFAULT_TEST_OPTIONS), { executionProvider: "cpu", version: "test" }, { log: (l) => lines.push(l), logContent });
    const client = new KvwardenClient(`127.0.0.1:${await server.listen("127.0.0.1:0")}`);
    close = async () => {
      client.close();
      await server.close(200);
    };
    await client.prefill({ sequenceId: "story", text: PROMPT });
    const output = (await decodeAll(client, { sequenceId: "story", maxNewTokens: 12, ignoreEos: true })).map((m) => m.text).join("");
    return { lines, output };
  };

  it("never carries prompt or output text by default", async () => {
    const { lines, output } = await converse(false);
    expect(lines.map((l) => l.method)).toEqual(["kvwarden.v1.KvCache/Prefill", "kvwarden.v1.KvCache/Decode"]);
    const logged = JSON.stringify(lines);
    expect(output.trim().length).toBeGreaterThan(5);
    expect(logged).not.toContain("quiet village");
    expect(logged).not.toContain(output.trim());
  });

  it("carries the prompt and the output with --log-content", async () => {
    const { lines, output } = await converse(true);
    expect(lines[0].prompt).toContain(PROMPT);
    expect(lines[1].output).toBe(output);
  });
});
