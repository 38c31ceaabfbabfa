import { describe, expect, it } from "vitest";
import { runInSlices, runToEnd } from "../../src/numerics/sliced-work.js";

/** Work of `steps` steps, each logged (and taking `busyMs`), that yields after each; returns its name. */
function* work(name: string, steps: number, log: string[], busyMs = 0): Generator<void, string> {
  for (let i = 1; i <= steps; i++) {
    const until = performance.now() + busyMs;
    while (performance.now() < until);
    log.push(`${name}${i}`);
    yield;
  }
  return name;
}

/** Logs "turn" each time the event loop reaches its check phase, until stopped. */
function turns(log: string[]): () => void {
  let on = true;
  const tick = () => {
    if (!on) return;
    log.push("turn");
    setImmediate(tick);
  };
  setImmediate(tick);
  return () => (on = false);
}

describe("sliced work", () => {
  it("runs in one go with runToEnd", () => {
    const log: string[] = [];
    expect(runToEnd(work("a", 3, log))).toBe("a");
    expect(log).toEqual(["a1", "a2", "a3"]);
  });

  it("turns the event loop after every step with no slice length", async () => {
    const log: string[] = [];
    const stop = turns(log);
    expect(await runInSlices(work("a", 3, log))).toBe("a");
    stop();
    expect(log.slice(0, 5)).toEqual(["a1", "turn", "a2", "turn", "a3"]);
  });

  it("runs short work in one go within a slice", async () => {
    const log: string[] = [];
    const stop = turns(log);
    await runInSlices(work("a", 50, log), undefined, 1_000);
    stop();
    expect(log).toEqual(Array.from({ length: 50 }, (_, i) => `a${i + 1}`));
  });

  it("shares one slice a turn among every work running, each taking a step a turn", async () => {
    const log: string[] = [];
    const stop = turns(log);
    // a's first step spends the turn's slice: b, starting in the same turn, takes one step and waits for the next.
    await Promise.all([runInSlices(work("a", 2, log, 20), undefined, 10), runInSlices(work("b", 3, log), undefined, 10)]);
    stop();
    expect(log.slice(0, log.indexOf("turn") + 1)).toEqual(["a1", "b1", "turn"]);
    expect(log).toContain("b3");
  });

  it("stops with the signal's reason once it aborts", async () => {
    const abort = new AbortController();
    const log: string[] = [];
    const running = runInSlices(work("a", 100, log), abort.signal);
    abort.abort(new Error("gone"));
    await expect(running).rejects.toThrow("gone");
    expect(log).toEqual(["a1"]);
  });
});
