import { describe, expect, it } from "vitest";
import { AdmissionAbandoned, AdmissionQueue, AdmissionQueueFull } from "../../src/kv/admission-queue.js";

/** A budget of whole units that attempts take from, as the memory manager takes bytes. */
class Units {
  constructor(public free: number) {}
  take(units: number, label: string, admitted: string[]): () => string | null {
    return () => {
      if (units > this.free) return null;
      this.free -= units;
      admitted.push(label);
      return label;
    };
  }
}

describe("AdmissionQueue", () => {
  it("admits waiting calls in arrival order as room frees, the call whose turn it is holding back the smaller ones after it", async () => {
    const queue = new AdmissionQueue(8);
    const units = new Units(0);
    const admitted: string[] = [];
    const big = queue.wait("", units.take(3, "big", admitted));
    const small = queue.wait("", units.take(1, "small", admitted));
    expect(queue.length).toBe(2);
    units.free = 2;
    queue.retry();
    expect(admitted).toEqual([]); // "small" would fit, but "big" came first
    units.free = 4;
    queue.retry();
    await expect(big).resolves.toBe("big");
    await expect(small).resolves.toBe("small");
    expect(admitted).toEqual(["big", "small"]);
    expect(queue.length).toBe(0);
    expect(units.free).toBe(0);
  });

  it("takes turns across tenants: each tenant's calls in order, one tenant after another", async () => {
    const queue = new AdmissionQueue(8);
    const units = new Units(0);
    const admitted: string[] = [];
    const calls = [
      queue.wait("a", units.take(1, "a1", admitted)),
      queue.wait("a", units.take(1, "a2", admitted)),
      queue.wait("a", units.take(1, "a3", admitted)),
      queue.wait("b", units.take(1, "b1", admitted)),
      queue.wait("b", units.take(1, "b2", admitted)),
    ];
    units.free = 4;
    queue.retry();
    expect(admitted).toEqual(["a1", "b1", "a2", "b2"]);
    expect(queue.length).toBe(1);
    units.free = 1;
    queue.retry();
    await Promise.all(calls);
    expect(admitted).toEqual(["a1", "b1", "a2", "b2", "a3"]);
  });

  it("refuses a call beyond its limit with AdmissionQueueFull, and every call at limit 0", async () => {
    const queue = new AdmissionQueue(1);
    const waiting = queue.wait("", () => null);
    await expect(queue.wait("", () => "never")).rejects.toBeInstanceOf(AdmissionQueueFull);
    await expect(new AdmissionQueue(0).wait("", () => "never")).rejects.toThrow("the admission queue is full (0 calls already wait for KV memory, --max-queue)");
    expect(queue.length).toBe(1);
    void waiting.catch(() => undefined);
  });

  it("lets a call whose signal aborts leave at once with the abort's reason, and admits the calls it held back", async () => {
    const queue = new AdmissionQueue(4);
    const units = new Units(1);
    const admitted: string[] = [];
    const controller = new AbortController();
    const big = queue.wait("", units.take(2, "big", admitted), controller.signal);
    const small = queue.wait("", units.take(1, "small", admitted));
    controller.abort("deadline");
    const error = await big.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AdmissionAbandoned);
    expect((error as AdmissionAbandoned).reason).toBe("deadline");
    await expect(small).resolves.toBe("small"); // retried once the abandoned call left
    expect(admitted).toEqual(["small"]);
    expect(queue.length).toBe(0);
  });

  it("refuses at once a call whose signal has already aborted, without queueing it", async () => {
    const queue = new AdmissionQueue(4);
    await expect(queue.wait("", () => "x", AbortSignal.abort("cancelled"))).rejects.toBeInstanceOf(AdmissionAbandoned);
    expect(queue.length).toBe(0);
  });

  it("rejects a call whose attempt throws, and goes on to the next", async () => {
    const queue = new AdmissionQueue(4);
    const failing = queue.wait("", () => {
      throw new Error("device memory short");
    });
    const next = queue.wait("", () => "next");
    queue.retry();
    await expect(failing).rejects.toThrow("device memory short");
    await expect(next).resolves.toBe("next");
    expect(queue.length).toBe(0);
  });

  it("coalesces retries asked for in one turn of the event loop into one", async () => {
    const queue = new AdmissionQueue(4);
    let tries = 0;
    const waiting = queue.wait("", () => (++tries === 2 ? "ok" : null));
    queue.retrySoon();
    queue.retrySoon();
    queue.retrySoon();
    await Promise.resolve();
    expect(tries).toBe(1);
    queue.retrySoon();
    await expect(waiting).resolves.toBe("ok");
    expect(tries).toBe(2);
  });
});
