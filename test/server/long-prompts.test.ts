import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_MAX_PROMPT_BYTES, type EngineModel } from "../../src/engine/engine.js";
import { loadTestModel, REFERENCE_TEXT } from "../support/test-model.js";
import { startTestServer, statusOf, type TestServer } from "../support/test-server.js";
import { answersWhileTokenizing, observeTokenizing } from "../support/tokenizing-order.js";

/**
 * Long prompts hurt no other caller: a text being tokenized leaves the event
 * loop turning (health and Stats answer meanwhile), and a prompt over
 * --max-prompt-bytes is refused before any work, naming the limit.
 */
describe("long prompts", () => {
  let model: EngineModel;

  beforeAll(async () => {
    model = await loadTestModel();
  });

  describe("while a megabyte of text is tokenized", () => {
    let t: TestServer;
    /** Resolves when the server starts tokenizing a text. */
    let tokenizing: Promise<void>;

    beforeAll(async () => {
      const observed = observeTokenizing(model.tokenizer);
      tokenizing = observed.tokenizing;
      t = await startTestServer({ ...model, tokenizer: observed.tokenizer }, { maxPromptBytes: 2 * DEFAULT_MAX_PROMPT_BYTES });
    });
    afterAll(() => t.close());

    it("answers health and Stats before the Prefill ends", async () => {
      const text = `${REFERENCE_TEXT}\n`.repeat(Math.ceil(DEFAULT_MAX_PROMPT_BYTES / REFERENCE_TEXT.length));
      const { answered, prefill } = await answersWhileTokenizing(t, tokenizing, text);
      expect(answered.slice(0, 2).sort()).toEqual(["health SERVING", "stats 0"]);
      expect(answered[2]).toBe("prefill");
      // The text is far past stories260K's 512-token context: refused once its length in tokens is known.
      expect(prefill).toMatchObject({ code: status.OUT_OF_RANGE, details: expect.stringContaining("past the model's trained context of 512 tokens") });
    });
  });

  describe("over --max-prompt-bytes", () => {
    let t: TestServer;

    beforeAll(async () => {
      t = await startTestServer(model, { maxPromptBytes: 100 });
    });
    afterAll(() => t.close());

    it("refuses text with INVALID_ARGUMENT naming the limit, counting UTF-8 bytes", async () => {
      // 34 three-byte characters: 34 characters, 102 bytes.
      const refused = await statusOf(t.client.prefill({ sequenceId: "s", text: "中".repeat(34) }));
      expect(refused).toEqual({ code: status.INVALID_ARGUMENT, details: "text is 102 bytes of UTF-8; the limit is 100 (--max-prompt-bytes)" });
      const fed = await t.client.prefill({ sequenceId: "s", text: "a".repeat(100) });
      expect(fed.tokenIds[0]).toBe(model.tokenizer.bosId);
    });

    it("refuses more token ids than the limit, as many as it allows are fed", async () => {
      const refused = await statusOf(t.client.prefill({ sequenceId: "ids", tokenIds: Array(101).fill(403) }));
      expect(refused).toEqual({ code: status.INVALID_ARGUMENT, details: "token_ids has 101 ids; the limit is 100 (--max-prompt-bytes, one id per byte)" });
      expect((await t.client.prefill({ sequenceId: "ids", tokenIds: Array(100).fill(403) })).promptTokens).toBe(100);
    });
  });

  it("refuses text over the default limit of 1 MiB at once", async () => {
    const t = await startTestServer(model);
    try {
      const refused = await statusOf(t.client.prefill({ sequenceId: "s", text: "a".repeat(DEFAULT_MAX_PROMPT_BYTES + 1) }));
      expect(refused).toEqual({ code: status.INVALID_ARGUMENT, details: "text is 1048577 bytes of UTF-8; the limit is 1048576 (--max-prompt-bytes)" });
    } finally {
      await t.close();
    }
  });
});
