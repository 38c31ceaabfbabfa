import { status } from "@grpc/grpc-js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KvCacheClient } from "../../src/gen/kvwarden/v1/kvwarden.js";
import { KvwardenMetrics } from "../../src/telemetry/metrics.js";
import { loadTestModel } from "../support/test-model.js";
import { call, decodeAll, statusOf } from "../support/test-server.js";
import { clientOf, startSecureServer, type SecureServer } from "./support/secure-server.js";

const TOKENS = { alice: "alice-token-0123456789abcdef", bob: "bob-token-0123456789abcdef" };
const QUOTA = { kvBytes: 400_000, sequences: 2, requestTokens: 100 };

describe("per-tenant quotas over gRPC", () => {
  let sidecar: SecureServer;
  let metrics: KvwardenMetrics;
  let alice: KvCacheClient;
  let bob: KvCacheClient;
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
    metrics.close();
    await sidecar.close();
    rmSync(folder, { recursive: true, force: true });
  });

  const prefill = (client: KvCacheClient, sequenceId: string, tokens: number) =>
    call(client, client.prefill, { sequenceId, tokenIds: Array.from({ length: tokens }, (_, i) => 5 + (i % 400)) });
  const codeOf = async (promise: Promise<unknown>) => (await statusOf(promise)).code;

  it("refuses what is over a tenant's sequences, bytes or tokens per request with RESOURCE_EXHAUSTED, and reports use in Stats", async () => {
    await prefill(alice, "a", 50);
    await prefill(alice, "b", 10);
    expect(await codeOf(prefill(alice, "c", 1))).toBe(status.RESOURCE_EXHAUSTED);
    expect(await codeOf(prefill(alice, "a", 101))).toBe(status.RESOURCE_EXHAUSTED);
    expect(await codeOf(decodeAll(alice, { sequenceId: "b", maxNewTokens: 101 }))).toBe(status.RESOURCE_EXHAUSTED);
    const before = await call(alice, alice.stats, {});
    const bytes = await statusOf(prefill(alice, "a", 100));
    expect(bytes).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: expect.stringContaining("tenant KV quota") });
    const after = await call(alice, alice.stats, {});
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
    expect((await call(bob, bob.stats, {})).tenantSequenceCount).toBe(2);
  });

  it("lists the quotas in Info and the tenants' use and refusals in metrics", async () => {
    const { limits } = await call(bob, bob.info, {});
    expect(limits).toMatchObject({ tenantKvBytesQuota: BigInt(QUOTA.kvBytes), tenantMaxSequences: QUOTA.sequences, maxRequestTokens: QUOTA.requestTokens });
    const text = await metrics.registry.metrics();
    const alices = await call(alice, alice.stats, {});
    expect(text).toContain(`kvwarden:tenant_kv_cache_used_bytes{tenant="alice"} ${alices.tenantKvBytes}`);
    expect(text).toContain('kvwarden:tenant_num_sequences{tenant="bob"} 2');
    expect(text).toContain('kvwarden:tenant_resource_exhausted_total{tenant="alice"} 4');
    // The global gauge counts every tenant's bytes.
    expect(text).toContain("kvwarden:kv_cache_used_bytes " + String(alices.kvBytesUsed));
  });
});
