import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EngineModel } from "../../src/engine/engine.js";
import { DecodeRequest, EvictionSpec } from "../../src/gen/kvwarden/v1/kvwarden.js";
import { KvwardenClient } from "../../src/client/index.js";
import { EngineTelemetry } from "../../src/telemetry/engine-telemetry.js";
import { loadTestModel } from "../support/test-model.js";
import { decodeAll, startTestServer, type TestServer } from "../support/test-server.js";

/** Eight streams, each with its own prompt, policy and length: what a batch must not blur. */
const STREAMS: { text: string; maxNewTokens: number; prefillEviction?: Partial<EvictionSpec>; decode?: Partial<DecodeRequest> }[] = [
  { text: "Once upon a time, there was a little girl named Lily.", maxNewTokens: 60 },
  { text: "Tom had a big red ball. He liked to play with it in the park every day. One day he threw it very high and it went over the fence. Tom was sad, but his friend Sam found the ball and gave it back to him.", maxNewTokens: 45, prefillEviction: { policy: "snapkv", maxTokens: 40 } },
  { text: "The sun was hot.", maxNewTokens: 70, decode: { eviction: EvictionSpec.fromPartial({ policy: "h2o", maxTokens: 24 }) } },
  { text: "One day, a cat and a dog went to the forest to find a big tree.", maxNewTokens: 50, decode: { eviction: EvictionSpec.fromPartial({ policy: "streaming_llm", maxTokens: 32, decodeSlack: 4 }) } },
  { text: "Sue and her mom baked a cake. It was very yummy and sweet. They put red berries on top and shared it with the neighbors. Everyone said it was the best cake they ever had, and Sue smiled a big smile.", maxNewTokens: 55, prefillEviction: { policy: "adakv", maxTokens: 40 } },
  { text: "There was a bird who could not fly.", maxNewTokens: 40, decode: { eviction: EvictionSpec.fromPartial({ policy: "tova", maxTokens: 20 }) } },
  { text: "Ben wanted a toy car.", maxNewTokens: 65, decode: { sampling: { temperature: 0.8, topK: 40, topP: 0.95, seed: 11n } } },
  { text: "Mia saw a big fish in the pond. She wanted to catch it. She got a net and waited by the water for a long time. When the fish came close, she tried, but it swam away, and Mia laughed.", maxNewTokens: 35, prefillEviction: { policy: "knorm", maxTokens: 40 } },
];

const sequenceId = (i: number) => `stream-${i}`;

async function prefillAll(client: KvwardenClient): Promise<void> {
  await Promise.all(STREAMS.map((s, i) => client.prefill({ sequenceId: sequenceId(i), text: s.text, eviction: s.prefillEviction })));
}

async function decodeStream(client: KvwardenClient, i: number): Promise<number[]> {
  const s = STREAMS[i];
  const messages = await decodeAll(client, { sequenceId: sequenceId(i), maxNewTokens: s.maxNewTokens, ignoreEos: true, ...s.decode });
  return messages.map((m) => m.tokenId);
}

describe("continuous batching: concurrent Decode streams step together in one graph run", () => {
  let model: EngineModel;
  let sidecar: TestServer;
  const batchSizes: number[] = [];
  /** Hears the decode steps' batch sizes of every sidecar the tests start. */
  const telemetry = new EngineTelemetry({ step: (kind, _seconds, sequences) => kind === "decode" && batchSizes.push(sequences) });
  /** Each stream's tokens decoded alone (the first test fills it). */
  const alone: number[][] = [];

  beforeAll(async () => {
    model = await loadTestModel();
    sidecar = await startTestServer(model, { telemetry });
  });
  afterAll(async () => {
    await sidecar.close();
  });

  it("generates for every sequence exactly the tokens it generates alone, as streams join and leave the batch", async () => {
    const { client } = sidecar;
    await prefillAll(client);
    for (let i = 0; i < STREAMS.length; i++) alone.push(await decodeStream(client, i));
    expect(batchSizes.every((size) => size === 1)).toBe(true);
    for (let i = 0; i < STREAMS.length; i++) await client.release(sequenceId(i));

    batchSizes.length = 0;
    await prefillAll(client);
    // Seven start at once; the eighth joins once the first has 10 tokens out. All leave at different steps.
    const late = STREAMS.length - 1;
    const together = STREAMS.map(() => [] as number[]);
    let lateStream: Promise<void> | undefined;
    let arenaWhileBatching = 0n;
    const run = async (i: number) => {
      const s = STREAMS[i];
      const request = { sequenceId: sequenceId(i), maxNewTokens: s.maxNewTokens, ignoreEos: true, ...s.decode };
      for await (const message of client.decode(request)) {
        together[i].push(message.tokenId);
        if (i === 0 && together[0].length === 10) lateStream = run(late);
        if (i === 0 && together[0].length === 20) arenaWhileBatching = (await client.stats()).kvBytesBatchArena;
      }
    };
    await Promise.all(STREAMS.slice(0, late).map((_, i) => run(i)));
    await lateStream;

    expect(together).toEqual(alone);
    // The steps really ran together: the largest batch held every stream, and most tokens came from batches.
    expect(Math.max(...batchSizes)).toBe(STREAMS.length);
    const batched = batchSizes.filter((size) => size > 1).reduce((sum, size) => sum + size, 0);
    const total = STREAMS.reduce((sum, s) => sum + s.maxNewTokens, 0);
    expect(batched / total).toBeGreaterThan(0.8);
    // The batch's working copy is there while streams run together, and freed once no Decode runs.
    expect(arenaWhileBatching).toBeGreaterThan(0n);
    const stats = await client.stats();
    expect(stats.kvBytesBatchArena).toBe(0n);
  });

  it("caps a batch at --max-batch-size; the streams beyond it step in the next batch", async () => {
    const capped = await startTestServer(model, { maxBatchSize: 3, telemetry });
    try {
      await prefillAll(capped.client);
      batchSizes.length = 0;
      const together = await Promise.all(STREAMS.map((_, i) => decodeStream(capped.client, i)));
      expect(Math.max(...batchSizes)).toBe(3);
      expect(together).toEqual(alone);
    } finally {
      await capped.close();
    }
  });
});
