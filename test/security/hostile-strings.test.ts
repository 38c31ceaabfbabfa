import { credentials, Client, status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine, type EngineModel } from "../../src/engine/engine.js";
import { KvwardenClient, PrefillRequest } from "../../src/client/index.js";
import { ECHO_MAX_BYTES } from "../../src/server/echo.js";
import { KvwardenServer } from "../../src/sidecar/kvwarden-server.js";
import type { LogFields } from "../../src/telemetry/json-log.js";
import { rawCall } from "../fuzz/support/raw-call.js";
import { loadTestModel } from "../support/test-model.js";
import { decodeAll, DEFAULT_TEST_OPTIONS, statusOf } from "../support/test-server.js";

/**
 * Strings a caller sends are never repeated back or logged at full length,
 * and strings that are not UTF-8 are refused rather than read as one
 * another: a caller cannot blow up a reply, a log line, or reach another
 * caller's sequence.
 */
describe("hostile strings", () => {
  let model: EngineModel;
  let server: KvwardenServer;
  let client: KvwardenClient;
  let address: string;
  const lines: LogFields[] = [];

  beforeAll(async () => {
    model = await loadTestModel();
    server = new KvwardenServer(new Engine(model, DEFAULT_TEST_OPTIONS), { executionProvider: "cpu", version: "test" }, { log: (line) => lines.push(line) });
    address = `127.0.0.1:${await server.listen("127.0.0.1:0")}`;
    client = new KvwardenClient(address);
  });
  afterAll(async () => {
    client.close();
    await server.close(1_000);
  });

  it("refuses a 64 KB policy name with a short message", async () => {
    await client.prefill({ sequenceId: "story", tokenIds: [1, 403, 407, 261] });
    const policy = "x".repeat(64 * 1024);
    for (const field of [{ policy }, { policy: "adakv", basePolicy: policy }]) {
      const refused = await statusOf(client.evict({ sequenceId: "story", eviction: { maxTokens: 2, ...field } }));
      const name = "basePolicy" in field ? "eviction.base_policy" : "eviction.policy";
      expect(refused).toEqual({ code: status.INVALID_ARGUMENT, details: `${name} is 65536 bytes long; no policy name is longer than 64` });
    }
  });

  it("refuses a 1 MB sequence id in every method with a short message, and logs it cut short", async () => {
    const id = "s".repeat(1 << 20);
    const details = "sequence_id is 1048576 bytes long; the limit is 256";
    lines.length = 0;
    expect(await statusOf(client.prefill({ sequenceId: id, tokenIds: [1] }))).toEqual({ code: status.INVALID_ARGUMENT, details });
    expect(await statusOf(client.stats({ sequenceId: id }))).toEqual({ code: status.INVALID_ARGUMENT, details });
    expect(await statusOf(client.release(id))).toEqual({ code: status.INVALID_ARGUMENT, details });
    expect(await statusOf(client.evict({ sequenceId: id, eviction: { policy: "streaming_llm", maxTokens: 2 } }))).toEqual({ code: status.INVALID_ARGUMENT, details });
    expect(await statusOf(decodeAll(client, { sequenceId: id }))).toEqual({ code: status.INVALID_ARGUMENT, details });
    const fork = await statusOf(client.fork("story", id));
    expect(fork).toEqual({ code: status.INVALID_ARGUMENT, details: details.replace("sequence_id", "new_sequence_id") });
    expect(lines).toHaveLength(6);
    for (const line of lines) expect(Buffer.byteLength(JSON.stringify(line))).toBeLessThan(2 * ECHO_MAX_BYTES);
    const note = "… (1048576 bytes in all)";
    expect(lines[0].sequence_id).toBe("s".repeat(ECHO_MAX_BYTES - Buffer.byteLength(note)) + note);
  });

  it("counts a sequence id's limit in UTF-8 bytes", async () => {
    // 86 three-byte characters: within 256 characters, over 256 bytes.
    const refused = await statusOf(client.prefill({ sequenceId: "中".repeat(86), tokenIds: [1] }));
    expect(refused).toEqual({ code: status.INVALID_ARGUMENT, details: "sequence_id is 258 bytes long; the limit is 256" });
    expect((await client.prefill({ sequenceId: "中".repeat(85), tokenIds: [1] })).sequenceId).toBe("中".repeat(85));
  });

  it("refuses sequence ids that are not UTF-8, which would otherwise read as one id", async () => {
    // A bare grpc-js client: the body is not valid UTF-8 on purpose, which the shipped client (it encodes every request) cannot send.
    const raw = new Client(address, credentials.createInsecure());
    try {
      const bodyWithId = (first: number) => {
        const body = Buffer.from(PrefillRequest.encode(PrefillRequest.fromPartial({ sequenceId: "?bad", tokenIds: [1, 403] })).finish());
        body[body.indexOf("?bad")] = first;
        return body;
      };
      for (const first of [0xff, 0xfe]) {
        const outcome = await rawCall(raw, "/kvwarden.v1.KvCache/Prefill", false, bodyWithId(first), 10_000);
        expect(outcome).toEqual({ code: status.INVALID_ARGUMENT, details: "the request body is not a valid message: a string field is not valid UTF-8", messages: 0 });
      }
      expect((await client.stats()).sequences.map((s) => s.sequenceId)).not.toContain("\ufffdbad");
    } finally {
      raw.close();
    }
  });
});
