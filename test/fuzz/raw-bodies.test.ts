import { credentials, status, Client } from "@grpc/grpc-js";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DecodeRequest,
  EvictRequest,
  ForkRequest,
  InfoRequest,
  KvCacheService,
  OffloadRequest,
  PrefillRequest,
  ReleaseRequest,
  StatsRequest,
  TruncateRequest,
} from "../../src/gen/kvwarden/v1/kvwarden.js";
import { loadTestModel } from "../support/test-model.js";
import { startTestServer, type TestServer } from "../support/test-server.js";
import { expectExactAccounting } from "./support/accounting.js";
import { PROPERTY_TIMEOUT_MS, REPORT, runs } from "./support/fuzz-scale.js";
import { rawCall } from "./support/raw-call.js";

/** Valid requests of every method, which mutations start from. */
const SEEDS: Record<keyof typeof KvCacheService, Uint8Array[]> = {
  prefill: [
    PrefillRequest.encode(PrefillRequest.fromPartial({ sequenceId: "a", tokenIds: [1, 403, 407, 261] })).finish(),
    PrefillRequest.encode(PrefillRequest.fromPartial({ sequenceId: "b", text: "Once upon a time", requestId: "r1", returnLogprobs: true, topLogprobs: 3 })).finish(),
    PrefillRequest.encode(PrefillRequest.fromPartial({ sequenceId: "a", tokenIds: Array(40).fill(5), eviction: { policy: "snapkv", maxTokens: 16, window: 4 } })).finish(),
    PrefillRequest.encode(PrefillRequest.fromPartial({ sequenceId: "c", messages: [{ role: "user", content: "hi" }] })).finish(),
  ],
  decode: [
    DecodeRequest.encode(DecodeRequest.fromPartial({ sequenceId: "a", maxNewTokens: 4 })).finish(),
    DecodeRequest.encode(
      DecodeRequest.fromPartial({ sequenceId: "b", maxNewTokens: 8, ignoreEos: true, sampling: { temperature: 0.8, topK: 40, topP: 0.9, seed: 7n }, eviction: { policy: "h2o", maxTokens: 12 } }),
    ).finish(),
  ],
  evict: [
    EvictRequest.encode(EvictRequest.fromPartial({ sequenceId: "a", eviction: { policy: "streaming_llm", maxTokens: 8 } })).finish(),
    EvictRequest.encode(EvictRequest.fromPartial({ sequenceId: "b", eviction: { policy: "nacl", keepFraction: 0.5, proxySpan: { start: 1, end: 3 } }, requestId: "e1" })).finish(),
  ],
  stats: [StatsRequest.encode(StatsRequest.fromPartial({ sequenceId: "a", includePositions: true })).finish(), StatsRequest.encode(StatsRequest.fromPartial({})).finish()],
  // The test server has no KV store: every Offload is refused (FAILED_PRECONDITION or a bad request).
  offload: [OffloadRequest.encode(OffloadRequest.fromPartial({ sequenceId: "a", requestId: "o1" })).finish()],
  release: [ReleaseRequest.encode(ReleaseRequest.fromPartial({ sequenceId: "b", requestId: "x" })).finish()],
  info: [InfoRequest.encode({}).finish()],
  fork: [ForkRequest.encode(ForkRequest.fromPartial({ sequenceId: "a", newSequenceId: "a2", requestId: "f1" })).finish()],
  truncate: [TruncateRequest.encode(TruncateRequest.fromPartial({ sequenceId: "a", length: 3, requestId: "t1" })).finish()],
};

type Mutation =
  | { op: "flip"; at: number; bit: number }
  | { op: "set"; at: number; byte: number }
  | { op: "insert"; at: number; bytes: Uint8Array }
  | { op: "delete"; at: number; length: number }
  | { op: "truncate"; at: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant("flip" as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ op: fc.constant("set" as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ op: fc.constant("insert" as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 12 }) }),
  fc.record({ op: fc.constant("delete" as const), at: fc.nat(), length: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ op: fc.constant("truncate" as const), at: fc.nat() }),
);

function mutate(seed: Uint8Array, mutations: Mutation[]): Buffer {
  let bytes = Buffer.from(seed);
  for (const m of mutations) {
    const at = m.at % (bytes.length + 1);
    if (m.op === "flip" && at < bytes.length) bytes[at] ^= 1 << m.bit;
    else if (m.op === "set" && at < bytes.length) bytes[at] = m.byte;
    else if (m.op === "insert") bytes = Buffer.concat([bytes.subarray(0, at), m.bytes, bytes.subarray(at)]);
    else if (m.op === "delete") bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + m.length)]);
    else if (m.op === "truncate") bytes = bytes.subarray(0, at);
  }
  return bytes;
}

const METHODS = Object.keys(KvCacheService) as (keyof typeof KvCacheService)[];

/** A body for one method: random bytes, or a valid request with a few mutations. */
const body = fc.constantFrom(...METHODS).chain((method) =>
  fc.tuple(
    fc.constant(method),
    fc.oneof(
      fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes)),
      fc.tuple(fc.constantFrom(...SEEDS[method]), fc.array(mutation, { minLength: 1, maxLength: 4 })).map(([seed, ms]) => mutate(seed, ms)),
    ),
  ),
);

/** Statuses that say the request was at fault, or could not be served now: never the server's fault. */
const CLIENT_ERRORS = new Set([status.OK, status.INVALID_ARGUMENT, status.NOT_FOUND, status.FAILED_PRECONDITION, status.OUT_OF_RANGE, status.RESOURCE_EXHAUSTED, status.ALREADY_EXISTS]);

describe("raw request bodies", () => {
  let t: TestServer;
  let raw: Client;
  beforeAll(async () => {
    // A short per-sequence cap bounds any Decode, whatever max_new_tokens the bytes spell.
    t = await startTestServer(await loadTestModel(), { kvBudgetBytes: 4 * 1024 * 1024, maxSequenceTokens: 128, prefillChunkTokens: 32 });
    // A bare grpc-js client: these bodies are malformed on purpose, which the shipped client (it encodes every request) cannot send.
    raw = new Client(t.address, credentials.createInsecure());
  });
  afterAll(async () => {
    raw.close();
    await t.close();
  });

  it(
    "answers random and mutated bodies of every method with a client-error status, never crashing or hanging",
    async () => {
      const seen = new Map<string, number>();
      let cases = 0;
      const started = performance.now();
      await fc.assert(
        fc.asyncProperty(body, async ([method, bytes]) => {
          // Start from an empty cache now and then, so that Prefill keeps finding room.
          if (++cases % 250 === 0) t.engine.expireIdle(Infinity);
          const { path, responseStream } = KvCacheService[method];
          const outcome = await rawCall(raw, path, responseStream, bytes, 10_000);
          const key = `${method} ${status[outcome.code]}`;
          seen.set(key, (seen.get(key) ?? 0) + 1);
          if (!CLIENT_ERRORS.has(outcome.code)) throw new Error(`${method} answered ${status[outcome.code]}: ${outcome.details} (body ${bytes.toString("hex")})`);
        }),
        { numRuns: runs(3_000, 100_000) },
      );
      await expectExactAccounting(t.client);
      if (REPORT) console.log(JSON.stringify({ fuzz: "raw bodies", cases, seconds: (performance.now() - started) / 1000, outcomes: Object.fromEntries([...seen].sort()) }));
      // Malformed bodies were met, and answered as the caller's fault.
      expect([...seen.keys()].some((key) => key.endsWith("INVALID_ARGUMENT"))).toBe(true);
    },
    PROPERTY_TIMEOUT_MS,
  );

  it("answers a body that is not a message with INVALID_ARGUMENT, not INTERNAL", async () => {
    // Field 1 as a length-delimited string claiming 100 bytes that are not there.
    const outcome = await rawCall(raw, KvCacheService.prefill.path, false, Buffer.from([0x0a, 0x64, 0x61]), 5_000);
    expect(outcome).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining("not a valid message") });
  });
});
