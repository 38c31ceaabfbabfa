import { status } from "@grpc/grpc-js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EngineModel } from "../../src/engine/engine.js";
import { KvwardenClient } from "../../src/client/index.js";
import { EngineTelemetry } from "../../src/telemetry/engine-telemetry.js";
import { KvwardenMetrics } from "../../src/telemetry/metrics.js";
import { only, recordSpans } from "../telemetry/support/span-recorder.js";
import { loadTestModel } from "../support/test-model.js";
import { decodeAll, startTestServer } from "../support/test-server.js";
import { clientOf, startSecureServer } from "./support/secure-server.js";

const TOKENS = { alice: "alice-token-0123456789abcdef", bob: "bob-token-0123456789abcdef" };
const tokens = (n: number) => Array.from({ length: n }, (_, i) => 5 + i);
/** A standing decode budget, slack wide enough that it never runs while decoding here: only memory pressure compresses. */
const budget = (maxTokens: number) => ({ policy: "streaming_llm", maxTokens, decodeSlack: 64 });

/** Leaves an idle sequence of `client`'s tenant that holds `length` tokens and a decode budget of `keep` entries. */
async function idleWithBudget(client: KvwardenClient, sequenceId: string, length: number, keep: number): Promise<void> {
  await client.prefill({ sequenceId, tokenIds: tokens(length - 1) });
  await decodeAll(client, { sequenceId, maxNewTokens: 1, ignoreEos: true, eviction: budget(keep) });
}

/**
 * Bytes of the scene, measured on a roomy server: Alice's idle "a", Bob's idle
 * "own", what Bob's new "big" needs, and what compressing "a" or "own" frees.
 */
async function measure(model: EngineModel) {
  const t = await startTestServer(model);
  try {
    const bytes = async (sequenceId: string) => (await t.client.stats({ sequenceId })).sequences[0].kvBytes;
    await idleWithBudget(t.client, "a", 60, 16);
    await idleWithBudget(t.client, "own", 30, 8);
    await t.client.prefill({ sequenceId: "big", tokenIds: tokens(40) });
    const scene = { a: await bytes("a"), own: await bytes("own"), big: await bytes("big") };
    const freed = async (sequenceId: string, maxTokens: number) => {
      const { eviction } = await t.client.evict({ sequenceId, eviction: { policy: "streaming_llm", maxTokens } });
      return eviction!.bytesBefore - eviction!.bytesAfter;
    };
    return { ...scene, freedA: await freed("a", 16), freedOwn: await freed("own", 8) };
  } finally {
    await t.close();
  }
}

describe("memory pressure across tenants", () => {
  let model: EngineModel;
  let scene: Awaited<ReturnType<typeof measure>>;
  let recorder: ReturnType<typeof recordSpans>;
  const folder = mkdtempSync(join(tmpdir(), "kvwarden-cross-tenant-"));
  beforeAll(async () => {
    model = await loadTestModel();
    scene = await measure(model);
    recorder = recordSpans();
  });
  afterAll(async () => {
    await recorder.stop();
    rmSync(folder, { recursive: true, force: true });
  });

  /**
   * Alice leaves "a" idle first, then Bob "own"; Bob's "big" is short of room
   * by less than compressing either frees, so the least recently used
   * candidate allowed goes: Alice's, unless cross-tenant compression is off.
   */
  async function run(crossTenantCompression: boolean | undefined) {
    const metrics = new KvwardenMetrics(() => undefined);
    const shortfall = scene.freedOwn < scene.freedA ? scene.freedOwn : scene.freedA;
    const kvBudgetBytes = Number(scene.a + scene.own + scene.big - shortfall);
    const text = Object.entries(TOKENS).map(([tenant, token]) => `${token} ${tenant}`).join("\n");
    const sidecar = await startSecureServer(model, {
      engine: { kvBudgetBytes, crossTenantCompression, telemetry: new EngineTelemetry(metrics) },
      tokens: { path: join(folder, `tokens-${crossTenantCompression}`), text },
      server: { metrics },
    });
    const alice = clientOf(sidecar.address, TOKENS.alice);
    const bob = clientOf(sidecar.address, TOKENS.bob);
    try {
      await idleWithBudget(alice, "a", 60, 16);
      await idleWithBudget(bob, "own", 30, 8);
      recorder.exporter.reset();
      await bob.prefill({ sequenceId: "big", tokenIds: tokens(40) });
      const bytes = async (client: KvwardenClient, sequenceId: string) => (await client.stats({ sequenceId })).sequences[0].kvBytes;
      return {
        alice: await bytes(alice, "a"),
        own: await bytes(bob, "own"),
        span: only(recorder.exporter.getFinishedSpans(), "kvwarden.v1.KvCache/Prefill"),
        metrics: await metrics.registry.metrics(),
      };
    } finally {
      alice.close();
      bob.close();
      await sidecar.close();
    }
  }

  it("by default compresses another tenant's idle sequence, and reports it in the trace and a counter", async () => {
    const outcome = await run(undefined);
    expect(outcome.alice).toBe(scene.a - scene.freedA);
    expect(outcome.own).toBe(scene.own);
    const events = outcome.span.events.filter((e) => e.name === "kvwarden.cross_tenant_compression");
    expect(events.map((e) => e.attributes)).toEqual([
      {
        "kvwarden.eviction.compressed_tenant": "alice",
        "kvwarden.tenant": "bob",
        "kvwarden.eviction.policy": "streaming_llm",
        "kvwarden.eviction.bytes_before": Number(scene.a),
        "kvwarden.eviction.bytes_after": Number(scene.a - scene.freedA),
      },
    ]);
    expect(outcome.metrics).toContain('kvwarden:cross_tenant_compressions_total{tenant="alice"} 1');
  });

  it("with cross-tenant compression off, compresses only the requesting tenant's own sequence", async () => {
    const outcome = await run(false);
    expect(outcome.alice).toBe(scene.a);
    expect(outcome.own).toBe(scene.own - scene.freedOwn);
    expect(outcome.span.attributes["rpc.grpc.status_code"]).toBe(status.OK);
    expect(outcome.span.events.filter((e) => e.name === "kvwarden.cross_tenant_compression")).toEqual([]);
    expect(outcome.metrics).not.toMatch(/kvwarden:cross_tenant_compressions_total\{/);
  });
});
