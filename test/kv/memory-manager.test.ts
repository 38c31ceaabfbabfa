import { describe, expect, it } from "vitest";
import { CompressIdleSequences, type Compression } from "../../src/kv/compress-idle.js";
import { OffloadIdleSequences } from "../../src/kv/offload-idle.js";
import { KvMemoryManager, type AllocationRequest, type MemoryManagerOptions } from "../../src/kv/memory-manager.js";
import type { ReliefPlan, ReliefStep } from "../../src/kv/pressure-relief.js";
import { SlabPool } from "../../src/kv/slab-pool.js";
import type { TenantQuota } from "../../src/kv/tenant-quota.js";
import { SlabResident } from "./support/slab-resident.js";

/** A pool, its residents and a manager over them (docs/architecture.md). */
function setUp(budget: number, options: Partial<MemoryManagerOptions<SlabResident>> = {}) {
  const pool = new SlabPool(budget);
  const residents: SlabResident[] = [];
  const manager = new KvMemoryManager(pool, () => residents, { relief: [], ...options });
  let clock = 0;
  const add = (name: string, tenant: string, bytes = 0) => {
    const resident = new SlabResident(name, tenant, pool, ++clock);
    // In slabs of 100 bytes, so that compressing can give back part of what a resident holds.
    for (let held = 0; held < bytes; held += 100) resident.grow(Math.min(100, bytes - held));
    residents.push(resident);
    return resident;
  };
  return { pool, residents, manager, add };
}

/** Asks for `extra` more bytes for `resident`. */
function growBy(resident: SlabResident, extra: number): AllocationRequest<SlabResident> {
  return { resident, bytes: resident.bytes + extra, take: () => resident.grow(extra) };
}

/** Residents that asked for a budget compress to `to` bytes; `log` records commits; `prepareOf` works one out ahead. */
function compressingTo(
  to: Map<SlabResident, number>,
  log: string[],
  prepareOf?: (resident: SlabResident) => Generator<void, { bytesAfter: number } | null>,
): CompressIdleSequences<SlabResident> {
  return new CompressIdleSequences((resident): Compression | null => {
    const bytesAfter = to.get(resident);
    if (bytesAfter === undefined) return null;
    return {
      bytesAfter,
      commit: (requester) => {
        log.push(`compress ${resident.name} for '${requester}'`);
        resident.shrinkTo(bytesAfter);
      },
    };
  }, prepareOf);
}

/** A relief step that would free `freed` bytes, logging when it plans and commits. */
function recordingStep(name: string, freed: number, log: string[], onCommit = () => {}): ReliefStep<SlabResident> {
  return {
    plan(candidates, shortfall): ReliefPlan<SlabResident> {
      log.push(`plan ${name} for ${shortfall} from [${candidates.map((c) => c.name).join(",")}]`);
      return {
        freedBytes: freed,
        commit: () => {
          log.push(`commit ${name}`);
          onCommit();
        },
      };
    },
  };
}

describe("KvMemoryManager.allocate", () => {
  it("admits a request that fits, takes its room and gives it back on release, once", () => {
    const { pool, manager, add } = setUp(1000);
    const a = add("a", "t", 200);
    const reservation = manager.allocate(growBy(a, 400));
    expect(reservation?.bytes).toBe(400);
    expect(a.bytes).toBe(600);
    expect(pool.used).toBe(600);
    reservation!.release();
    expect(a.bytes).toBe(200);
    expect(pool.used).toBe(200);
    reservation!.release();
    expect(pool.used).toBe(200);
  });

  it("admits a request that fills the budget exactly", () => {
    const { pool, manager, add } = setUp(1000);
    const a = add("a", "t", 200);
    expect(manager.allocate(growBy(a, 800))?.bytes).toBe(800);
    expect(pool.available).toBe(0);
  });

  it("gives null on exhaustion without taking anything, and says why with the bytes involved", () => {
    const { pool, manager, add } = setUp(1000);
    const a = add("a", "t", 600);
    const b = add("b", "t", 0);
    let took = false;
    const request = { resident: b, bytes: 404, take: () => ((took = true), () => {}) };
    expect(manager.allocate(request)).toBeNull();
    expect(took).toBe(false);
    expect(pool.used).toBe(600);
    expect(a.bytes).toBe(600);
    expect(manager.whyRefused(request)).toBe("KV budget exhausted: 404 bytes requested, 400 bytes free (budget 1000 bytes)");
  });

  it("counts what the requester already holds as free to it when it asks for a total", () => {
    const { manager, add } = setUp(1000);
    const a = add("a", "t", 600);
    const request = { resident: a, bytes: 1004, take: () => a.grow(404) };
    expect(manager.allocate(request)).toBeNull();
    expect(manager.whyRefused(request)).toBe("KV budget exhausted: 1004 bytes requested, 1000 bytes free (budget 1000 bytes)");
  });
});

describe("KvMemoryManager quotas", () => {
  const quota: TenantQuota = { kvBytes: 500, sequences: 2, requestTokens: 16 };

  it("refuses a tenant past its KV quota before any relief runs, while another tenant is admitted", () => {
    const log: string[] = [];
    const { manager, add } = setUp(1100, { quota, relief: [recordingStep("compress", 1000, log)] });
    const a = add("a", "alice", 300);
    add("c", "bob", 600);
    const request = growBy(a, 204);
    expect(manager.allocate(request)).toBeNull();
    expect(log).toEqual([]); // the global budget is short too, but the quota refused first
    expect(manager.whyRefused(request)).toBe("tenant KV quota exhausted: 204 bytes requested, 200 bytes free of the tenant's 500");
    expect(manager.allocate(growBy(a, 200))?.bytes).toBe(200);
    expect(manager.tenantBytes("alice")).toBe(500);
  });

  it("sums every sequence of the tenant against its quota", () => {
    const { manager, add } = setUp(10_000, { quota });
    add("a1", "alice", 300);
    const a2 = add("a2", "alice", 100);
    const request = growBy(a2, 104);
    expect(manager.allocate(request)).toBeNull();
    expect(manager.whyRefused(request)).toBe("tenant KV quota exhausted: 104 bytes requested, 100 bytes free of the tenant's 500");
  });

  it("limits the sequences a tenant holds and the tokens one request may carry", () => {
    const { manager, add } = setUp(1000, { quota });
    add("a1", "alice");
    expect(manager.newSequenceRefusal("alice")).toBeUndefined();
    add("a2", "alice");
    expect(manager.newSequenceRefusal("alice")).toBe("the tenant holds 2 sequences, its quota; release one first");
    expect(manager.newSequenceRefusal("bob")).toBeUndefined();
    expect(manager.requestTokensRefusal(16, "prompt")).toBeUndefined();
    expect(manager.requestTokensRefusal(17, "prompt")).toBe("prompt of 17 tokens is over the quota of 16 tokens per request");
  });

  it("has no limits without a quota", () => {
    const { manager, add } = setUp(1000);
    for (let i = 0; i < 50; i++) add(`a${i}`, "alice");
    expect(manager.newSequenceRefusal("alice")).toBeUndefined();
    expect(manager.requestTokensRefusal(1e9, "max_new_tokens")).toBeUndefined();
  });
});

describe("KvMemoryManager pressure relief", () => {
  it("runs its steps in order, each for what is still short, and commits them all in order", () => {
    const log: string[] = [];
    const { manager, add } = setUp(1000, { relief: [recordingStep("first", 100, log), recordingStep("second", 300, log)] });
    add("x", "t", 800);
    const r = add("r", "t", 0);
    // 400 asked, 200 free: 200 short; the first step frees 100, the second is asked for the other 100.
    expect(manager.allocate({ resident: r, bytes: 400, take: () => () => {} })).toBeNull(); // the fake steps free nothing really
    expect(log).toEqual(["plan first for 200 from [x]", "plan second for 100 from [x]", "commit first", "commit second"]);
  });

  it("stops asking steps once the shortfall is planned", () => {
    const log: string[] = [];
    const { manager, add } = setUp(1000, { relief: [recordingStep("first", 500, log), recordingStep("second", 500, log)] });
    add("x", "t", 800);
    const r = add("r", "t", 0);
    manager.allocate({ resident: r, bytes: 400, take: () => () => {} });
    expect(log).toEqual(["plan first for 200 from [x]", "commit first"]);
  });

  it("commits nothing and refuses when all steps together cannot free the shortfall", () => {
    const log: string[] = [];
    const { pool, manager, add } = setUp(1000, { relief: [recordingStep("first", 100, log), recordingStep("second", 50, log)] });
    add("x", "t", 800);
    const r = add("r", "t", 0);
    expect(manager.allocate(growBy(r, 400))).toBeNull();
    expect(log).toEqual(["plan first for 200 from [x]", "plan second for 100 from [x]"]);
    expect(pool.used).toBe(800);
  });

  it("compresses idle residents that carry a budget, least recently used first, and only as many as needed", () => {
    const log: string[] = [];
    const to = new Map<SlabResident, number>();
    const { pool, manager, add } = setUp(1000, { relief: [compressingTo(to, log)] });
    const old = add("old", "alice", 200);
    const plain = add("plain", "alice", 200); // carries no budget: never compressed
    const busy = add("busy", "alice", 200);
    busy.busy = true;
    const middle = add("middle", "alice", 200);
    const recent = add("recent", "alice", 200);
    for (const resident of [old, busy, middle, recent]) to.set(resident, 100);
    const requester = add("requester", "alice", 0);
    to.set(requester, 0);
    const reservation = manager.allocate(growBy(requester, 200));
    expect(reservation?.bytes).toBe(200);
    expect(log).toEqual(["compress old for 'alice'", "compress middle for 'alice'"]);
    expect([old, plain, busy, middle, recent, requester].map((r) => r.bytes)).toEqual([100, 200, 200, 100, 200, 200]);
    expect(pool.used).toBe(1000);
  });

  it("compresses nobody when compressing every candidate would not free enough", () => {
    const log: string[] = [];
    const to = new Map<SlabResident, number>();
    const { pool, manager, add } = setUp(1000, { relief: [compressingTo(to, log)] });
    to.set(add("a", "alice", 400), 300);
    to.set(add("b", "alice", 400), 300);
    const requester = add("requester", "alice", 0);
    const request = growBy(requester, 404);
    expect(manager.allocate(request)).toBeNull();
    expect(log).toEqual([]);
    expect(pool.used).toBe(800);
    expect(manager.whyRefused(request)).toBe("KV budget exhausted: 404 bytes requested, 200 bytes free (budget 1000 bytes)");
  });

  it("takes room from other tenants only when cross-tenant relief is allowed", () => {
    for (const crossTenantRelief of [true, false]) {
      const log: string[] = [];
      const to = new Map<SlabResident, number>();
      const { manager, add } = setUp(1000, { crossTenantRelief, relief: [compressingTo(to, log)] });
      to.set(add("bobs", "bob", 400), 0);
      to.set(add("alices", "alice", 400), 200);
      const requester = add("requester", "alice", 0);
      const reservation = manager.allocate(growBy(requester, 400));
      if (crossTenantRelief) {
        expect(reservation?.bytes).toBe(400);
        expect(log).toEqual(["compress bobs for 'alice'"]);
      } else {
        expect(reservation?.bytes).toBe(400);
        expect(log).toEqual(["compress alices for 'alice'"]);
      }
    }
  });

  it("refuses when only other tenants could make room and cross-tenant relief is off", () => {
    const log: string[] = [];
    const to = new Map<SlabResident, number>();
    const { manager, add } = setUp(1000, { crossTenantRelief: false, relief: [compressingTo(to, log)] });
    to.set(add("bobs", "bob", 800), 0);
    const requester = add("requester", "alice", 0);
    expect(manager.allocate(growBy(requester, 400))).toBeNull();
    expect(log).toEqual([]);
  });

  it("prepares, in slices and changing nothing, the compressions an admission short of room would choose", async () => {
    const log: string[] = [];
    const to = new Map<SlabResident, number>();
    const prepared: string[] = [];
    const compress = compressingTo(to, log, function* (resident) {
      prepared.push(resident.name);
      yield;
      const bytesAfter = to.get(resident);
      return bytesAfter === undefined ? null : { bytesAfter };
    });
    const { pool, manager, add } = setUp(1000, { relief: [compress] });
    const old = add("old", "alice", 200);
    add("plain", "alice", 200); // carries no budget
    const middle = add("middle", "alice", 200);
    const recent = add("recent", "alice", 200);
    for (const resident of [old, middle, recent]) to.set(resident, 100);
    const requester = add("requester", "alice", 0);
    // Short of 200: the two least recently used with a budget would free it.
    await manager.prepareRelief(growBy(requester, 400));
    expect(prepared).toEqual(["old", "plain", "middle"]);
    expect(log).toEqual([]);
    expect(pool.used).toBe(800);
    // Not short: nothing to prepare.
    prepared.length = 0;
    await manager.prepareRelief(growBy(requester, 200));
    expect(prepared).toEqual([]);
  });

  it("never asks a step for room when the budget is not short", () => {
    const log: string[] = [];
    const { manager, add } = setUp(1000, { relief: [recordingStep("first", 1000, log)] });
    add("x", "t", 500);
    expect(manager.allocate(growBy(add("r", "t"), 500))?.bytes).toBe(500);
    expect(log).toEqual([]);
  });

  describe("compress, then offload, then refuse (docs/kv-store.md, \"Memory pressure\")", () => {
    /** Offloading into a fake store: the resident gives back everything it holds; only those `canLeaveNow` allows leave at once. */
    const offloading = (offloaded: string[], canLeaveNow?: (resident: SlabResident) => boolean) =>
      new OffloadIdleSequences<SlabResident>((resident) => {
        offloaded.push(resident.name);
        resident.shrinkTo(0);
      }, canLeaveNow);

    it("offloads the least recently used idle residents only for what compression could not free", () => {
      const log: string[] = [];
      const offloaded: string[] = [];
      const to = new Map<SlabResident, number>();
      const { manager, add, pool } = setUp(1000, { relief: [compressingTo(to, log), offloading(offloaded)] });
      const oldest = add("oldest", "t", 300);
      add("middle", "t", 300);
      to.set(add("budgeted", "t", 300), 200);
      const requester = add("requester", "t", 0);
      // Short by 400: compression frees 100, then offloading "oldest" (300) covers the rest.
      expect(manager.allocate(growBy(requester, 500))?.bytes).toBe(500);
      expect(log).toEqual(["compress budgeted for 't'"]);
      expect(offloaded).toEqual(["oldest"]);
      expect(oldest.bytes).toBe(0);
      expect(pool.used).toBeLessThanOrEqual(1000);
    });

    it("refuses, offloading and compressing nothing, when even offloading every idle resident cannot free enough", () => {
      const log: string[] = [];
      const offloaded: string[] = [];
      const to = new Map<SlabResident, number>();
      const { manager, add } = setUp(1000, { relief: [compressingTo(to, log), offloading(offloaded)] });
      to.set(add("budgeted", "t", 300), 200);
      add("idle", "t", 300);
      const busy = add("busy", "t", 300);
      busy.busy = true;
      expect(manager.allocate(growBy(add("requester", "t", 0), 800))).toBeNull();
      expect(log).toEqual([]);
      expect(offloaded).toEqual([]);
    });

    it("offloads residents that can leave now before older ones that must be written back first", () => {
      const offloaded: string[] = [];
      const { manager, add } = setUp(1000, { relief: [offloading(offloaded, (r) => r.name !== "device")] });
      add("device", "t", 300);
      add("host", "t", 300);
      const request = growBy(add("requester", "t", 0), 600);
      expect(manager.writeBackFor(request)).toEqual([]);
      expect(manager.allocate(request)?.bytes).toBe(600);
      expect(offloaded).toEqual(["host"]);
    });

    it("while relief needs a write-back it commits nothing, not even compression, and names what to write back; once written, admits", () => {
      const log: string[] = [];
      const offloaded: string[] = [];
      const written = new Set<SlabResident>();
      const to = new Map<SlabResident, number>();
      const { manager, add, pool } = setUp(1000, { relief: [compressingTo(to, log), offloading(offloaded, (r) => written.has(r))] });
      const oldest = add("oldest", "t", 300);
      add("middle", "t", 300);
      to.set(add("budgeted", "t", 300), 200);
      const request = growBy(add("requester", "t", 0), 500);
      expect(manager.allocate(request)).toBeNull();
      expect([log, offloaded, pool.used]).toEqual([[], [], 900]);
      expect(manager.writeBackFor(request)).toEqual([oldest]);
      written.add(oldest);
      expect(manager.writeBackFor(request)).toEqual([]);
      expect(manager.allocate(request)?.bytes).toBe(500);
      expect([log, offloaded]).toEqual([["compress budgeted for 't'"], ["oldest"]]);
    });

    it("names nothing to write back when the budget is not short, or when even writing back every idle resident would not free enough", () => {
      const { manager, add } = setUp(1000, { relief: [offloading([], () => false)] });
      add("idle", "t", 300);
      const requester = add("requester", "t", 0);
      expect(manager.writeBackFor(growBy(requester, 700))).toEqual([]);
      expect(manager.writeBackFor(growBy(requester, 1001))).toEqual([]);
      expect(manager.writeBackFor(growBy(requester, 701)).map((r) => r.name)).toEqual(["idle"]);
    });
  });
});
