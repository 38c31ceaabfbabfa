import { status } from "@grpc/grpc-js";
import fc from "fast-check";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Engine, EngineModel, TenantQuota } from "../../src/engine/engine.js";
import type { KvwardenClient, PrefillResponse } from "../../src/client/index.js";
import { loadTestModel } from "../support/test-model.js";
import { clientOf, startSecureServer } from "../security/support/secure-server.js";
import { cacheDigests, type SequenceDigest } from "./support/cache-digest.js";
import { PROPERTY_TIMEOUT_MS, REPORT, runs } from "./support/fuzz-scale.js";
import { step, TENANTS, type Call, type Tenant } from "./support/requests.js";
import { runCall, type CallOutcome } from "./support/run-call.js";

const QUOTA: Required<TenantQuota> = { kvBytes: 300_000, sequences: 3, requestTokens: 48 };
/** Tight enough that both tenants together overrun it, and each can overrun its quota alone. */
const ENGINE = { kvBudgetBytes: 450_000, maxSequenceTokens: 96, prefillChunkTokens: 16, tenantQuota: QUOTA };
const TOKENS: Record<Tenant, string> = { alice: "alice-token-0123456789abcdef", bob: "bob-token-0123456789abcdef" };

/** Statuses a call may end with; anything else (INTERNAL, UNKNOWN, UNAVAILABLE, ...) is a server fault. */
const DEFINED = new Set([
  status.OK,
  status.INVALID_ARGUMENT,
  status.NOT_FOUND,
  status.FAILED_PRECONDITION,
  status.OUT_OF_RANGE,
  status.RESOURCE_EXHAUSTED,
  status.ABORTED, // concurrent calls on one sequence
  status.CANCELLED, // the client's own cancellation
  status.ALREADY_EXISTS, // Fork onto a taken id
]);

const PROMPT = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315];

const keyOf = (tenant: string, id: string) => `${tenant}\u0000${id}`;

/** Waits until no call holds a sequence: a cancelled Decode's server side ends a moment after its client gave up. */
async function settled(engine: Engine): Promise<void> {
  while ([...engine["table"].all()].some((s) => s.busy)) await new Promise((resolve) => setTimeout(resolve, 1));
}

/** Which sequences a finished call may have changed, given how it ended. */
function mayChange(c: Call, outcome: CallOutcome): string | undefined {
  const own = keyOf(c.tenant, c.request.sequenceId ?? "");
  if (c.method === "stats") return undefined;
  if (c.method === "decode") return outcome.messages.length > 0 ? own : undefined;
  // A fork changes nothing but creates its copy.
  if (c.method === "fork") return outcome.code === status.OK ? keyOf(c.tenant, c.request.newSequenceId ?? "") : undefined;
  return outcome.code === status.OK ? own : undefined;
}

/** Another sequence may change only by memory pressure compressing it, and only if it carries a decode budget. */
function compressedOnly(before: SequenceDigest, after: SequenceDigest | undefined): boolean {
  return after !== undefined && before.hasDecodeBudget && after.position === before.position && after.entries < before.entries;
}

describe("structured calls", () => {
  let model: EngineModel;
  const folder = mkdtempSync(join(tmpdir(), "kvwarden-fuzz-"));
  beforeAll(async () => {
    model = await loadTestModel();
  });
  afterAll(() => rmSync(folder, { recursive: true, force: true }));

  it(
    "answer every call with a defined status, keep every budget, and leave failed calls' sequences and all others bit-identical",
    async () => {
      const seen = new Map<string, number>();
      const started = performance.now();
      const text = TENANTS.map((tenant) => `${TOKENS[tenant]} ${tenant}`).join("\n");
      await fc.assert(
        fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 12 }), async (steps) => {
          const sidecar = await startSecureServer(model, { engine: ENGINE, tokens: { path: join(folder, "tokens"), text } });
          const clients = Object.fromEntries(TENANTS.map((tenant) => [tenant, clientOf(sidecar.address, TOKENS[tenant])])) as Record<Tenant, KvwardenClient>;
          try {
            // Each tenant starts with a sequence, so that most runs reach Decode and Evict on live caches.
            for (const tenant of TENANTS) await clients[tenant].prefill({ sequenceId: "a", tokenIds: PROMPT });
            for (const group of steps) {
              const before = cacheDigests(sidecar.engine);
              const outcomes = await Promise.all(group.map((c) => runCall(clients[c.tenant], c)));
              await settled(sidecar.engine);
              outcomes.forEach((outcome, i) => {
                const key = `${group[i].method} ${status[outcome.code]}`;
                seen.set(key, (seen.get(key) ?? 0) + 1);
                if (!DEFINED.has(outcome.code)) throw new Error(`${group[i].method} answered ${status[outcome.code]}: ${outcome.details}`);
              });
              if (group.length === 1) checkEffects(group[0], outcomes[0], before, cacheDigests(sidecar.engine));
              await checkBudgets(clients);
            }
          } finally {
            for (const client of Object.values(clients)) client.close();
            await sidecar.close();
          }
        }),
        { numRuns: runs(120, 3_000) },
      );
      if (REPORT) {
        const calls = [...seen.values()].reduce((sum, n) => sum + n, 0);
        console.log(JSON.stringify({ fuzz: "structured calls", calls, seconds: (performance.now() - started) / 1000, outcomes: Object.fromEntries([...seen].sort()) }));
      }
    },
    PROPERTY_TIMEOUT_MS,
  );
});

/** What one call did to the caches, against what it may do. */
function checkEffects(c: Call, outcome: CallOutcome, before: Map<string, SequenceDigest>, after: Map<string, SequenceDigest>): void {
  const changeable = mayChange(c, outcome);
  for (const [key, digest] of before) {
    if (key === changeable || after.get(key)?.hash === digest.hash) continue;
    if (outcome.code === status.OK && compressedOnly(digest, after.get(key))) continue;
    throw new Error(`${c.method} (${status[outcome.code]}: ${outcome.details}) changed ${JSON.stringify(key)}, which it must leave alone`);
  }
  for (const key of after.keys()) {
    if (!before.has(key) && key !== changeable) throw new Error(`${c.method} (${status[outcome.code]}) created ${JSON.stringify(key)}`);
  }
  const own = before.get(changeable ?? "");
  if (c.method === "prefill" && outcome.code === status.OK) {
    const reply = outcome.response as PrefillResponse;
    // A retried request id answers the stored reply; otherwise the tokens were appended once.
    if (c.request.requestId === undefined) expect(reply.position).toBe((own?.position ?? 0) + reply.promptTokens);
  }
  if (c.method === "fork" && outcome.code === status.OK && c.request.requestId === undefined) {
    // The copy is the original, bit for bit (as the original was before: a fork changes nothing else).
    expect(after.get(changeable!)?.hash).toBe(before.get(keyOf(c.tenant, c.request.sequenceId ?? ""))?.hash);
  }
  if (c.method === "decode" && outcome.messages.length > 0) {
    const positions = outcome.messages.map((m) => m.position);
    expect(positions).toEqual(positions.map((_, i) => own!.position + i));
  }
}

/** The global budget and each tenant's quotas hold, and the bytes in use are exactly the sequences' bytes. */
async function checkBudgets(clients: Record<Tenant, KvwardenClient>): Promise<void> {
  const all = await Promise.all(TENANTS.map((tenant) => clients[tenant].stats()));
  let held = 0n;
  for (const stats of all) {
    expect(stats.tenantKvBytes).toBeLessThanOrEqual(BigInt(QUOTA.kvBytes));
    expect(stats.tenantSequenceCount).toBeLessThanOrEqual(QUOTA.sequences);
    expect(stats.tenantKvBytes).toBe(stats.sequences.reduce((sum, s) => sum + s.kvBytes, 0n));
    held += stats.tenantKvBytes;
  }
  expect(all[0].kvBytesUsed).toBe(held);
  expect(all[0].kvBytesUsed).toBeLessThanOrEqual(all[0].kvBytesBudget);
}
