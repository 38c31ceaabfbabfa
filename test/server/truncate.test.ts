import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectExactAccounting } from "../fuzz/support/accounting.js";
import { loadTestModel } from "../support/test-model.js";
import { decodeAll, decodeCancelledAfter, startTestServer, statusOf, type TestServer } from "../support/test-server.js";

const PROMPT = [1, 403, 407, 261, 378, 432];
const LONG_PROMPT = Array.from({ length: 40 }, (_, i) => [1, 403, 407, 261, 378, 432, 383, 286][i % 8]);

describe("Stats token ids and Truncate", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer(await loadTestModel(), { allowPastContext: true });
  });
  afterAll(() => t.close());

  const tokenIds = async (sequenceId: string) => (await t.client.stats({ sequenceId, includeTokenIds: true })).sequences[0];
  const greedy = async (sequenceId: string, maxNewTokens: number) => (await decodeAll(t.client, { sequenceId, maxNewTokens, ignoreEos: true })).map((m) => m.tokenId);
  /** The greedy tokens a fresh sequence fed `prompt` generates after its first `skip`. */
  const reference = async (prompt: number[], skip: number, count: number) => {
    await t.client.prefill({ sequenceId: "reference", tokenIds: prompt });
    const tokens = await greedy("reference", skip + count);
    await t.client.release("reference");
    return tokens.slice(skip);
  };

  it("after a cancelled Decode, Stats lists what the sequence holds and Truncate rolls it back to what the client saw", async () => {
    await t.client.prefill({ sequenceId: "story", tokenIds: PROMPT });
    const ended = await decodeCancelledAfter(t.client, { sequenceId: "story", maxNewTokens: 400, ignoreEos: true }, 5);
    const received = ended.received.map((message) => message.tokenId);
    expect(ended.code).toBe(status.CANCELLED);

    // Asked at once: the cancelled call has wound down before Stats answers, so what it says stays true.
    const held = await tokenIds("story");
    expect(held.tokenIds).toHaveLength(held.position);
    expect(held.tokenIds.slice(0, PROMPT.length + received.length)).toEqual([...PROMPT, ...received]);
    const again = await tokenIds("story");
    expect(again.tokenIds).toEqual(held.tokenIds);

    const seen = PROMPT.length + received.length;
    const truncated = await t.client.truncate("story", seen);
    expect(truncated).toMatchObject({ position: seen, droppedTokens: held.position - seen });
    expect((await tokenIds("story")).tokenIds).toEqual([...PROMPT, ...received]);

    const next = await greedy("story", 8);
    expect(next).toEqual(await reference(PROMPT, received.length, 8));
    expect((await tokenIds("story")).tokenIds).toEqual([...PROMPT, ...received, ...next]);
    await t.client.release("story");
    await expectExactAccounting(t.client);
  });

  it("cuts into fed tokens: decoding goes on exactly as from the shorter prompt, and length 0 empties the sequence", async () => {
    await t.client.prefill({ sequenceId: "cut", tokenIds: LONG_PROMPT });
    await greedy("cut", 4);
    expect(await t.client.truncate("cut", 10)).toMatchObject({ position: 10, droppedTokens: 34 });
    const stats = (await t.client.stats({ sequenceId: "cut", includePositions: true, includeTokenIds: true })).sequences[0];
    expect(stats.tokenIds).toEqual(LONG_PROMPT.slice(0, 10));
    // Token 9 waits to be fed again: the cache holds positions 0 to 8.
    expect(stats.layers[0].headPositions[0].positions).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    expect(await greedy("cut", 6)).toEqual(await reference(LONG_PROMPT.slice(0, 10), 0, 6));

    expect(await t.client.truncate("cut", 0)).toMatchObject({ position: 0, droppedTokens: 16 });
    expect((await statusOf(greedy("cut", 1))).code).toBe(status.FAILED_PRECONDITION);
    await t.client.prefill({ sequenceId: "cut", tokenIds: PROMPT });
    expect(await greedy("cut", 5)).toEqual(await reference(PROMPT, 0, 5));
    await t.client.release("cut");
    await expectExactAccounting(t.client);
  });

  it("keeps an eviction's sparse positions when the cut is past it, and refuses a cut the eviction made inexact", async () => {
    const evicted = async (sequenceId: string) => {
      await t.client.prefill({ sequenceId, tokenIds: LONG_PROMPT, eviction: { policy: "streaming_llm", maxTokens: 16 } });
    };
    await evicted("sparse");
    await greedy("sparse", 4); // positions 40 to 43; 40 to 42 fed
    const refused = await statusOf(t.client.truncate("sparse", 30));
    expect(refused.code).toBe(status.FAILED_PRECONDITION);
    expect(refused.details).toContain("an eviction ran on sequence 'sparse' when it held 40 tokens");
    // Nothing changed by the refusal.
    expect((await tokenIds("sparse")).position).toBe(44);

    expect(await t.client.truncate("sparse", 41)).toMatchObject({ position: 41, droppedTokens: 3 });
    await evicted("sparse:reference");
    await greedy("sparse:reference", 1);
    expect(await greedy("sparse", 6)).toEqual(await greedy("sparse:reference", 6));
    await t.client.release("sparse");
    await t.client.release("sparse:reference");
  });

  it("with a standing decode budget, drops only the pending token; a cut into fed tokens is refused, naming the budget", async () => {
    await t.client.prefill({ sequenceId: "budgeted", tokenIds: PROMPT });
    await decodeAll(t.client, { sequenceId: "budgeted", maxNewTokens: 4, ignoreEos: true, eviction: { policy: "streaming_llm", maxTokens: 64 } });
    const refused = await statusOf(t.client.truncate("budgeted", 7));
    expect(refused.code).toBe(status.FAILED_PRECONDITION);
    expect(refused.details).toContain("standing decode budget (streaming_llm)");
    expect(await t.client.truncate("budgeted", 9)).toMatchObject({ position: 9, droppedTokens: 1 });
    const held = await tokenIds("budgeted");
    expect(await greedy("budgeted", 3)).toEqual(await reference(PROMPT, held.position - PROMPT.length, 3));
    await t.client.release("budgeted");
  });

  it("answers OUT_OF_RANGE past the position and NOT_FOUND for an unknown sequence; the same length twice changes nothing", async () => {
    await t.client.prefill({ sequenceId: "short", tokenIds: PROMPT });
    expect((await statusOf(t.client.truncate("short", 7))).code).toBe(status.OUT_OF_RANGE);
    expect((await statusOf(t.client.truncate("nothing", 1))).code).toBe(status.NOT_FOUND);
    expect(await t.client.truncate("short", 6)).toMatchObject({ position: 6, droppedTokens: 0 });
    expect((await tokenIds("short")).tokenIds).toEqual(PROMPT);
    await t.client.release("short");
  });
});
