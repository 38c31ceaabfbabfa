import { afterAll, describe, expect, it, vi } from "vitest";
import { Engine } from "../../src/engine/engine.js";
import { healthOf } from "../support/health-probe.js";
import { spawnServe } from "../support/serve-process.js";
import { loadTestModel, MODEL_FILES } from "../support/test-model.js";
import { DEFAULT_TEST_OPTIONS } from "../support/test-server.js";

const PROMPT = Array.from({ length: 300 }, (_, i) => 5 + ((i * 37) % 400));
const GREEDY = { temperature: 0, topK: 0, topP: 1, seed: 0n };

async function greedy(engine: Engine, sequenceId: string): Promise<number[]> {
  await engine.prefill({ sequenceId, tokenIds: PROMPT });
  const tokens: number[] = [];
  for await (const out of engine.decode({ sequenceId, maxNewTokens: 12, sampling: GREEDY, stopTokenIds: [], ignoreEos: true })) tokens.push(out.tokenId);
  return tokens;
}

/** Start-up warm-up (docs/performance.md, "Warm-up"): the first step shapes run before readiness, and leave nothing behind. */
describe("warm-up", () => {
  const servers: ReturnType<typeof spawnServe>[] = [];
  afterAll(() => servers.forEach((s) => s.child.kill("SIGKILL")));

  it("runs a prefill chunk onto an empty cache and onto one chunk, then a decode step, and holds nothing after", async () => {
    const model = await loadTestModel();
    const warm = new Engine(model, { ...DEFAULT_TEST_OPTIONS, prefillChunkTokens: 64 });
    const cold = new Engine(model, { ...DEFAULT_TEST_OPTIONS, prefillChunkTokens: 64 });
    try {
      const shapes = await warm.warmUp();
      expect(shapes.map(({ tokens, past }) => ({ tokens, past }))).toEqual([
        { tokens: 64, past: 0 },
        { tokens: 64, past: 64 },
        { tokens: 1, past: 128 },
      ]);
      const stats = warm.stats();
      expect(stats.sequences).toEqual([]);
      expect(stats.kvBytesUsed).toBe(0);
      // The warmed engine generates exactly what a cold one does.
      expect(await greedy(warm, "s")).toEqual(await greedy(cold, "s"));
    } finally {
      warm.close();
      cold.close();
    }
  });

  it("`kvwarden serve` warms up before health reports SERVING", async () => {
    const serve = spawnServe(["--listen", "127.0.0.1:0", "--model", MODEL_FILES.modelPath, "--tokenizer", MODEL_FILES.tokenizerPath]);
    servers.push(serve);
    const lines = () => serve.stderr.split("\n").filter((line) => line.startsWith("{")).map((line) => JSON.parse(line) as Record<string, unknown>);
    await vi.waitFor(() => expect(lines().some((line) => line.msg === "serving")).toBe(true), { timeout: 30_000, interval: 50 });
    const messages = lines().map((line) => line.msg);
    expect(messages.indexOf("warmed up")).toBeGreaterThan(messages.indexOf("loading model"));
    expect(messages.indexOf("warmed up")).toBeLessThan(messages.indexOf("serving"));
    const warmed = lines().find((line) => line.msg === "warmed up")!;
    expect((warmed.shapes as { tokens: number; past: number }[]).map(({ tokens, past }) => [tokens, past])).toEqual([
      [128, 0],
      [128, 128],
      [1, 256],
    ]);
    const serving = lines().find((line) => line.msg === "serving")!;
    expect(await healthOf(`127.0.0.1:${serving.port}`, "")).toBe("SERVING");
  });
});
