import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_TEST_OPTIONS, decodeAll } from "../support/test-server.js";
import { Engine } from "../../src/engine/engine.js";
import { type EvictionSpec } from "../../src/gen/kvwarden/v1/kvwarden.js";
import { KvwardenClient } from "../../src/client/index.js";
import { capacityFor } from "../../src/kv/layer-cache.js";
import { loadModel } from "../../src/model/load-model.js";
import type { ExecutionProvider } from "../../src/model/runners/model-runner.js";
import { KvwardenServer } from "../../src/sidecar/kvwarden-server.js";
import { spawnServe } from "../support/serve-process.js";
import { MODEL_FILES, REFERENCE_FIRST_TOKENS } from "../support/test-model.js";

/**
 * `--execution-provider webgpu` (on Mesa's lavapipe in CI: tools/system-packages.sh installs it)
 * against the CPU path, both over gRPC on loopback: the same tokens, the same entries kept by every
 * policy, and a Stats that counts the device's bytes.
 */

const STORY =
  "Once upon a time, there was a little dog named Max. Max had a red ball, a blue kite and a big green hat. " +
  "He lived with a girl named Sue in a small house near the sea. Every morning Sue and Max went to the beach. " +
  "One day, a strong wind came and took the blue kite up into the sky. Max barked and ran after it.";

interface Side {
  engine: Engine;
  server: KvwardenServer;
  client: KvwardenClient;
}

async function startSide(executionProvider: ExecutionProvider): Promise<Side> {
  const model = await loadModel(MODEL_FILES, { executionProvider, intraOpThreads: 1 });
  const engine = new Engine(model, DEFAULT_TEST_OPTIONS);
  const server = new KvwardenServer(engine, { executionProvider, version: "test" });
  const port = await server.listen("127.0.0.1:0");
  return { engine, server, client: new KvwardenClient(`127.0.0.1:${port}`) };
}

async function stopSide(side: Side | undefined): Promise<void> {
  if (!side) return;
  side.client.close();
  await side.server.close(1_000);
  await side.engine.model.runner.release();
}

let cpu: Side;
let gpu: Side;

beforeAll(async () => {
  cpu = await startSide("cpu");
  gpu = await startSide("webgpu");
});

afterAll(async () => {
  await stopSide(cpu);
  await stopSide(gpu);
});

/** Greedy tokens of `sequenceId` after a Prefill of `tokenIds` or `text` (and an optional eviction and decode budget). */
async function generate(side: Side, sequenceId: string, prompt: { tokenIds?: number[]; text?: string }, newTokens: number, eviction?: Partial<EvictionSpec>, decodeBudget?: Partial<EvictionSpec>) {
  await side.client.prefill({ sequenceId, ...prompt, eviction });
  const messages = await decodeAll(side.client, { sequenceId, maxNewTokens: newTokens, ignoreEos: true, eviction: decodeBudget });
  const stats = await side.client.stats({ sequenceId, includePositions: true });
  return { tokens: messages.map((m) => m.tokenId), kept: stats.sequences[0].layers.map((layer) => layer.headPositions.map((h) => h.positions)) };
}

describe("webgpu execution provider", () => {
  it("decodes 200 greedy tokens from BOS equal to the CPU path, token for token", async () => {
    const [onCpu, onGpu] = [await generate(cpu, "greedy", { tokenIds: [1] }, 200), await generate(gpu, "greedy", { tokenIds: [1] }, 200)];
    expect(onGpu.tokens).toHaveLength(200);
    expect(onGpu.tokens.slice(0, REFERENCE_FIRST_TOKENS.length)).toEqual(REFERENCE_FIRST_TOKENS);
    expect(onGpu.tokens).toEqual(onCpu.tokens);
  });

  // Every policy at C = 48 after the prompt (each default minimum is below it), then 20 more tokens over what it kept.
  const evictions: Record<string, Partial<EvictionSpec>> = {
    streaming_llm: {},
    snapkv: {},
    pyramidkv: {},
    adakv: {},
    nacl: { seed: 7n },
    knorm: {},
    simlayerkv: { delta: 0.77 },
    h2o: {},
    tova: {},
    random: { seed: 7n },
  };
  for (const [policy, params] of Object.entries(evictions)) {
    it(`keeps the same entries as the CPU path with ${policy}, and decodes the same tokens over them`, async () => {
      const spec = { policy, maxTokens: 48, ...params };
      const [onCpu, onGpu] = [await generate(cpu, `evict-${policy}`, { text: STORY }, 20, spec), await generate(gpu, `evict-${policy}`, { text: STORY }, 20, spec)];
      expect(onGpu.kept.flat().some((positions) => positions.length < 48 + 20)).toBe(true);
      expect(onGpu.kept).toEqual(onCpu.kept);
      expect(onGpu.tokens).toEqual(onCpu.tokens);
    });
  }

  it("keeps decode budgets (h2o every step, streaming_llm with slack) as the CPU path does", async () => {
    for (const budget of [{ policy: "h2o", maxTokens: 24, decodeSlack: 0 }, { policy: "streaming_llm", maxTokens: 32, decodeSlack: 4 }]) {
      const id = `budget-${budget.policy}`;
      const [onCpu, onGpu] = [await generate(cpu, id, { text: "The sun was hot." }, 60, undefined, budget), await generate(gpu, id, { text: "The sun was hot." }, 60, undefined, budget)];
      expect(onGpu.kept.flat().every((positions) => positions.length <= budget.maxTokens + budget.decodeSlack)).toBe(true);
      expect(onGpu.kept).toEqual(onCpu.kept);
      expect(onGpu.tokens).toEqual(onCpu.tokens);
    }
  });

  it("forks a device-resident sequence: both continue as the CPU path's do", async () => {
    const continuations = async (side: Side) => {
      await side.client.prefill({ sequenceId: "fork-source", text: STORY, eviction: { policy: "snapkv", maxTokens: 40 } });
      await side.client.fork("fork-source", "fork-copy");
      const copy = await decodeAll(side.client, { sequenceId: "fork-copy", maxNewTokens: 15, ignoreEos: true });
      await side.client.release("fork-copy");
      const source = await decodeAll(side.client, { sequenceId: "fork-source", maxNewTokens: 15, ignoreEos: true });
      return [copy.map((m) => m.tokenId), source.map((m) => m.tokenId)];
    };
    const [onCpu, onGpu] = [await continuations(cpu), await continuations(gpu)];
    expect(onGpu[0]).toEqual(onGpu[1]);
    expect(onGpu).toEqual(onCpu);
  });

  it("counts the cache's device bytes in Stats and against the budget, and says where the cache lives", async () => {
    const { config } = gpu.engine.model;
    const prompt = Array.from({ length: 64 }, (_, i) => 1 + (i % 300));
    for (const side of [cpu, gpu]) await side.client.prefill({ sequenceId: "bytes", tokenIds: prompt });
    const [onCpu, onGpu] = [await cpu.client.stats({ sequenceId: "bytes" }), await gpu.client.stats({ sequenceId: "bytes" })];
    // One 64-token chunk: each layer's slab holds capacityFor(0, 64) slots per KV head, keys and values in float32.
    const deviceBytes = config.layers * config.kvHeads * capacityFor(0, 64) * config.headSize * 2 * 4;
    expect(onGpu.sequences[0].kvBytesDevice).toBe(BigInt(deviceBytes));
    expect(onGpu.kvLocation).toBe("webgpu");
    // The same slots are counted either way: on the host path all of them in host slabs.
    expect(onGpu.sequences[0].kvBytes).toBe(onCpu.sequences[0].kvBytes);
    expect(onCpu.sequences[0].kvBytesDevice).toBe(0n);
    expect(onCpu.kvLocation).toBe("host");
    const all = await gpu.client.stats();
    expect(all.kvBytesUsed).toBe(all.sequences.reduce((sum, s) => sum + s.kvBytes, 0n));
    expect(all.kvBytesDevice).toBe(all.sequences.reduce((sum, s) => sum + s.kvBytesDevice, 0n));
    await gpu.client.release("bytes");
    const after = await gpu.client.stats();
    expect(all.kvBytesDevice - after.kvBytesDevice).toBe(BigInt(deviceBytes));
  });

  it("reports the execution provider and the adapter in Info", async () => {
    const [onCpu, onGpu] = [await cpu.client.info(), await gpu.client.info()];
    expect(onGpu.executionProvider).toBe("webgpu");
    expect(onGpu.adapter).toMatch(/^Vulkan via Dawn; drivers: .*lvp/);
    expect(onCpu.executionProvider).toBe("cpu");
    expect(onCpu.adapter).toBe("");
  });
});

describe("webgpu without an adapter", () => {
  it("stops serve at start-up with an error that says so", async () => {
    const serve = spawnServe(["--execution-provider", "webgpu", "--listen", "127.0.0.1:0"], { VK_ICD_FILENAMES: "/nonexistent/vulkan-icd.json" });
    expect(await serve.exited).toBe(1);
    const errors = serve.stderr.split("\n").filter((line) => line.startsWith("{")).map((line) => JSON.parse(line)).filter((entry) => entry.level === "error");
    expect(errors.map((entry) => entry.msg)).toEqual([
      expect.stringMatching(/^--execution-provider webgpu: onnxruntime found no WebGPU adapter \("Failed to get a WebGPU adapter: No supported adapters"; Vulkan via Dawn; drivers: \/nonexistent\/vulkan-icd.json \(missing\)\)/),
    ]);
  });
});
