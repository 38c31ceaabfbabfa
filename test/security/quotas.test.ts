import { status, type ServiceError } from "@grpc/grpc-js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KvwardenClient } from "../../src/client/index.js";
import { KvwardenMetrics } from "../../src/telemetry/metrics.js";
import { loadTestModel } from "../support/test-model.js";
import { decodeAll, statusOf } from "../support/test-server.js";
import { clientOf, startSecureServer, type SecureServer } from "./support/secure-server.js";

const TOKENS = { alice: "alice-token-0123456789abcdef", bob: "bob-token-0123456789abcdef" };
const QUOTA = { kvBytes: 400_000, sequences: 2, requestTokens: 100 };

describe("per-tenant quotas over gRPC", () => {
  let sidecar: SecureServer;
  let metrics: KvwardenMetrics;
  let alice: KvwardenClient;
  let bob: KvwardenClient;
  const folder = mkdtempSync(join(tmpdir(), "kvwarden-quotas-"));

  beforeAll(async () => {
    const text = Object.entries(TOKENS).map(([tenant, token]) => `${token} ${tenant}`).join("\n");
    let engineStats: () => ReturnType<SecureServer["engine"]["stats"]> | undefined = () => undefined;
    metrics = new KvwardenMetrics(() => engineStats());
    sidecar = await startSecureServer(await loadTestModel(), { engine: { tenantQuota: QUOTA }, tokens: { path: join(folder, "tokens"), text }, server: { metrics } });
    engineStats = () => sidecar.engine.stats();
    alice = clientOf(sidecar.address, TOKENS.alice);
    bob = clientOf(sidecar.address, TOKENS.bob);
  });
  afterAll(async () => {
    alice.close();
    bob.close();
    await sidecar.close();
    rmSync(folder, { recursive: true, force: true });
  });

  const prefill = (client: KvwardenClient, sequenceId: string, tokens: number) =>
    client.prefill({ sequenceId, tokenIds: Array.from({ length: tokens }, (_, i) => 5 + (i % 400)) });
  const codeOf = async (promise: Promise<unknown>) => (await statusOf(promise)).code;

  it("refuses what is over a tenant's sequences, bytes or tokens per request with RESOURCE_EXHAUSTED, and reports use in Stats", async () => {
    await prefill(alice, "a", 50);
    await prefill(alice, "b", 10);
    expect(await codeOf(prefill(alice, "c", 1))).toBe(status.RESOURCE_EXHAUSTED);
    expect(await codeOf(prefill(alice, "a", 101))).toBe(status.RESOURCE_EXHAUSTED);
    expect(await codeOf(decodeAll(alice, { sequenceId: "b", maxNewTokens: 101 }))).toBe(status.RESOURCE_EXHAUSTED);
    const before = await alice.stats();
    const bytes = await statusOf(prefill(alice, "a", 100));
    expect(bytes).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: expect.stringContaining("tenant KV quota") });
    const after = await alice.stats();
    expect(after.tenantKvBytes).toBe(before.tenantKvBytes);
    expect(after).toMatchObject({
      tenant: "alice",
      tenantSequenceCount: 2,
      tenantSequenceQuota: QUOTA.sequences,
      tenantKvBytesQuota: BigInt(QUOTA.kvBytes),
    });
    expect(after.tenantKvBytes).toBe(after.sequences.reduce((sum, s) => sum + s.kvBytes, 0n));
    expect(after.tenantKvBytes).toBeLessThanOrEqual(BigInt(QUOTA.kvBytes));

    // Bob's quota is his own.
    await prefill(bob, "a", 100);
    await prefill(bob, "b", 1);
    expect((await bob.stats()).tenantSequenceCount).toBe(2);
  });

  it("lists the quotas in Info and the tenants' use and refusals in metrics", async () => {
    const { limits } = await bob.info();
    expect(limits).toMatchObject({ tenantKvBytesQuota: BigInt(QUOTA.kvBytes), tenantMaxSequences: QUOTA.sequences, maxRequestTokens: QUOTA.requestTokens });
    const text = await metrics.registry.metrics();
    const alices = await alice.stats();
    expect(text).toContain(`kvwarden:tenant_kv_cache_used_bytes{tenant="alice"} ${alices.tenantKvBytes}`);
    expect(text).toContain('kvwarden:tenant_num_sequences{tenant="bob"} 2');
    expect(text).toContain('kvwarden:tenant_resource_exhausted_total{tenant="alice"} 4');
    // The global gauge counts every tenant's bytes.
    expect(text).toContain("kvwarden:kv_cache_used_bytes " + String(alices.kvBytesUsed));
  });
});

describe("a refusal under memory pressure", () => {
  it("compresses nobody's cache: a request that its tenant quota refuses evicts nothing from other tenants", async () => {
    const folder = mkdtempSync(join(tmpdir(), "kvwarden-pressure-"));
    const text = Object.entries(TOKENS).map(([tenant, token]) => `${token} ${tenant}`).join("\n");
    // Sized so that Bob's growth is short of global room by less than compressing Alice frees, and over his quota.
    const sidecar = await startSecureServer(await loadTestModel(), { engine: { kvBudgetBytes: 420_000, tenantQuota: { kvBytes: 250_000 } }, tokens: { path: join(folder, "tokens"), text } });
    const alice = clientOf(sidecar.address, TOKENS.alice);
    const bob = clientOf(sidecar.address, TOKENS.bob);
    try {
      const tokens = (n: number) => Array.from({ length: n }, (_, i) => 5 + i);
      await alice.prefill({ sequenceId: "a", tokenIds: tokens(60) });
      // A standing decode budget that lets memory pressure compress the sequence later.
      await decodeAll(alice, { sequenceId: "a", maxNewTokens: 1, ignoreEos: true, eviction: { policy: "streaming_llm", maxTokens: 40, decodeSlack: 64 } });
      const before = (await alice.stats({ sequenceId: "a", includePositions: true })).sequences[0];
      await bob.prefill({ sequenceId: "b", tokenIds: tokens(20) });
      const refused = await statusOf(bob.prefill({ sequenceId: "b", tokenIds: tokens(80) }));
      expect(refused).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: expect.stringContaining("tenant KV quota") });
      const after = (await alice.stats({ sequenceId: "a", includePositions: true })).sequences[0];
      expect({ ...after, idleMs: 0n }).toEqual({ ...before, idleMs: 0n });
    } finally {
      alice.close();
      bob.close();
      await sidecar.close();
      rmSync(folder, { recursive: true, force: true });
    }
  });
});

describe("concurrent admissions", () => {
  it("never overrun a tenant's quota together: each counts the memory the others already took", async () => {
    const folder = mkdtempSync(join(tmpdir(), "kvwarden-concurrent-"));
    // Room in the quota for the first sequence and one more small one, not two.
    const sidecar = await startSecureServer(await loadTestModel(), {
      engine: { tenantQuota: { kvBytes: 300_000 } },
      tokens: { path: join(folder, "tokens"), text: `${TOKENS.alice} alice\n` },
    });
    const alice = clientOf(sidecar.address, TOKENS.alice);
    try {
      await alice.prefill({ sequenceId: "a", tokenIds: [1, 403, 407, 261] });
      const codes = await Promise.all(
        ["b", "c"].map((sequenceId) => alice.prefill({ sequenceId, tokenIds: [1] }).then(() => status.OK, (error: ServiceError) => error.code)),
      );
      expect(codes.sort()).toEqual([status.OK, status.RESOURCE_EXHAUSTED]);
      const stats = await alice.stats();
      expect(stats.tenantKvBytes).toBeLessThanOrEqual(300_000n);
      expect(stats.kvBytesUsed).toBe(stats.tenantKvBytes);
    } finally {
      alice.close();
      await sidecar.close();
      rmSync(folder, { recursive: true, force: true });
    }
  });
});
