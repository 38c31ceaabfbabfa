import { status, type ServiceError } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectDecodesLikeReference } from "../faults/support/reference-decode.js";
import { sequenceState } from "../faults/support/sequence-state.js";
import { expectExactAccounting } from "../fuzz/support/accounting.js";
import { loadTestModel, REFERENCE_FIRST_TOKENS } from "../support/test-model.js";
import { decodeAll, startTestServer, statusOf, type TestServer } from "../support/test-server.js";

const PROMPT = [1, ...REFERENCE_FIRST_TOKENS];
const tokensOf = (messages: { tokenId: number; position: number }[]) => messages.map((m) => [m.position, m.tokenId]);

describe("Fork", () => {
  let t: TestServer;
  beforeAll(async () => {
    // Room for a few short sequences only, so a fork can be refused for memory.
    t = await startTestServer(await loadTestModel(), { kvBudgetBytes: 400_000 });
  });
  afterAll(() => t.close());

  it("copies a sequence whole: the copy decodes what the original decodes, and neither disturbs the other", async () => {
    await t.client.prefill({ sequenceId: "story", tokenIds: PROMPT });
    // A Decode leaves a pending token (its keys are computed by the next call): the copy takes it along.
    await decodeAll(t.client, { sequenceId: "story", maxNewTokens: 3, ignoreEos: true });
    const before = await sequenceState(t.client, "story");
    const forked = await t.client.fork("story", "story-copy");
    expect(forked).toEqual({ newSequenceId: "story-copy", position: before.position, kvBytes: before.kvBytes });
    expect({ ...(await sequenceState(t.client, "story-copy")), sequenceId: "story" }).toEqual(before);
    await expectExactAccounting(t.client);

    const copy = await decodeAll(t.client, { sequenceId: "story-copy", maxNewTokens: 6, ignoreEos: true });
    await t.client.evict({ sequenceId: "story-copy", eviction: { policy: "streaming_llm", maxTokens: 8 } });
    expect(await sequenceState(t.client, "story")).toEqual(before);
    const original = await decodeAll(t.client, { sequenceId: "story", maxNewTokens: 6, ignoreEos: true });
    expect(tokensOf(copy)).toEqual(tokensOf(original));
    await expectDecodesLikeReference(t.client, "story", PROMPT);
    for (const id of ["story", "story-copy"]) await t.client.release(id);
  });

  it("keeps what eviction left, per head, and the standing decode budget", async () => {
    await t.client.prefill({ sequenceId: "evicted", tokenIds: PROMPT, eviction: { policy: "adakv", maxTokens: 10, window: 4 } });
    await decodeAll(t.client, { sequenceId: "evicted", maxNewTokens: 2, ignoreEos: true, eviction: { policy: "h2o", maxTokens: 12 } });
    const before = await sequenceState(t.client, "evicted");
    expect(before.decodePolicy).toBe("h2o");
    await t.client.fork("evicted", "evicted-copy");
    expect({ ...(await sequenceState(t.client, "evicted-copy")), sequenceId: "evicted" }).toEqual(before);
    const [copy, original] = [
      await decodeAll(t.client, { sequenceId: "evicted-copy", maxNewTokens: 8, ignoreEos: true }),
      await decodeAll(t.client, { sequenceId: "evicted", maxNewTokens: 8, ignoreEos: true }),
    ];
    expect(tokensOf(copy)).toEqual(tokensOf(original));
    // Both went on under the copied budget, evicting alike.
    expect(copy.map((m) => m.eviction?.entriesAfter)).toEqual(original.map((m) => m.eviction?.entriesAfter));
    for (const id of ["evicted", "evicted-copy"]) await t.client.release(id);
  });

  it("refuses an unknown source, a taken or empty new id, a busy source and a copy that does not fit, creating nothing", async () => {
    await t.client.prefill({ sequenceId: "src", tokenIds: PROMPT });
    await t.client.prefill({ sequenceId: "taken", tokenIds: [1] });
    const ids = async () => (await t.client.stats()).sequences.map((s) => s.sequenceId).sort();
    const held = await ids();
    expect(await statusOf(t.client.fork("nope", "x"))).toMatchObject({ code: status.NOT_FOUND });
    expect(await statusOf(t.client.fork("src", "taken"))).toMatchObject({
      code: status.ALREADY_EXISTS,
      details: expect.stringContaining("'taken' already exists"),
    });
    expect(await statusOf(t.client.fork("src", ""))).toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringContaining("new_sequence_id"),
    });

    // Memory: fill the budget with copies until one is refused; the refused one leaves nothing behind.
    let refused: { code: number; details: string } | undefined;
    for (let i = 0; i < 20 && !refused; i++) {
      refused = await t.client.fork("src", `fill-${i}`).then(
        () => undefined,
        (error: ServiceError) => ({ code: error.code, details: error.details }),
      );
    }
    expect(refused).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: expect.stringContaining("bytes requested") });
    await expectExactAccounting(t.client);
    for (const id of (await ids()).filter((id) => id.startsWith("fill-"))) await t.client.release(id);
    expect(await ids()).toEqual(held);

    // Busy: a Decode is streaming on the source (held between two of its tokens, so that it cannot end first on a loaded machine).
    const stream = t.engine.decode({ sequenceId: "src", maxNewTokens: 200, sampling: { temperature: 0, topK: 0, topP: 1, seed: 0n }, stopTokenIds: [], ignoreEos: true });
    await stream.next();
    expect(await statusOf(t.client.fork("src", "x"))).toMatchObject({ code: status.ABORTED });
    await stream.return(undefined);
    // Once the Decode has let go of the source, it forks.
    const fork = () => t.client.fork("src", "after-busy").then(() => "forked", (error: ServiceError) => error.code);
    await expect.poll(fork).toBe("forked");
    await t.client.release("after-busy");

    for (const id of held) await t.client.release(id);
  });

  it("answers a retry with the same request_id from its stored result", async () => {
    await t.client.prefill({ sequenceId: "retry", tokenIds: PROMPT });
    const first = await t.client.fork("retry", "retry-copy", { requestId: "fork-1" });
    const again = await t.client.fork("retry", "retry-copy", { requestId: "fork-1" });
    expect(again).toEqual(first);
    for (const id of ["retry", "retry-copy"]) await t.client.release(id);
  });
});
