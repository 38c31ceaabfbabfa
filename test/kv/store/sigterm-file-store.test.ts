import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Residency, type KvwardenClient } from "../../../src/client/index.js";
import { startSidecar } from "./support/sidecar.js";

const PROMPT = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends.";

async function decoded(client: KvwardenClient, sequenceId: string): Promise<number[]> {
  const tokens: number[] = [];
  for await (const token of client.decode({ sequenceId, maxNewTokens: 10, ignoreEos: true })) tokens.push(token.tokenId);
  return tokens;
}

/*
 * A rolling update in one pod (docs/kv-store.md, "SIGTERM and SIGKILL"): SIGTERM drains calls, then
 * offloads every resident sequence to the file store; the next process on the same folder continues them.
 */
describe("SIGTERM with a file store", () => {
  it("offloads every resident sequence, and a restarted process continues them", async () => {
    const folder = mkdtempSync(join(tmpdir(), "kvw-sigterm-"));
    const args = ["--kv-store", `file://${folder}`, "--kv-store-lease", "2", "--shutdown-grace", "20"];
    const first = await startSidecar([...args, "--replica-name", "before"]);
    const expected: Record<string, number[]> = {};
    try {
      const client = first.client();
      for (const id of ["one", "two"]) {
        await client.prefill({ sequenceId: id, text: PROMPT, eviction: id === "two" ? { policy: "snapkv", maxTokens: 36 } : undefined });
        await client.prefill({ sequenceId: `${id}-copy`, text: PROMPT, eviction: id === "two" ? { policy: "snapkv", maxTokens: 36 } : undefined });
        expected[id] = await decoded(client, `${id}-copy`);
        await client.release(`${id}-copy`);
      }
      first.serve.child.kill("SIGTERM");
      expect(await first.serve.exited).toBe(0);
      expect(first.logged("offloaded resident sequences")).toMatchObject({ offloaded: 2, failed: 0 });
    } finally {
      first.kill();
    }

    const second = await startSidecar([...args, "--replica-name", "after"]);
    try {
      const client = second.client();
      for (const id of ["one", "two"]) {
        expect(await decoded(client, id)).toEqual(expected[id]);
        expect((await client.stats({ sequenceId: id })).sequences[0].residency).toBe(Residency.RESIDENCY_BOTH);
      }
    } finally {
      second.kill();
    }
  }, 120_000);
});
