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

  it("runs short work in one go within a slice, paying no turn", async () => {
    const log: string[] = [];
    const stop = turns(log);
    await runInSlices(work("a", 50, log));
    stop();
    expect(log).toEqual(Array.from({ length: 50 }, (_, i) => `a${i + 1}`));
  });

  it("turns the event loop once a step spends the slice", async () => {
    const log: string[] = [];
    const stop = turns(log);
    expect(await runInSlices(work("a", 3, log, 8))).toBe("a");
    stop();
    expect(log.filter((entry) => entry.startsWith("a") || entry === "turn").slice(0, 5)).toEqual(["a1", "turn", "a2", "turn", "a3"]);
  });

  it("shares one slice a turn among every work running: one that starts once the slice is spent waits behind those already waiting", async () => {
    const log: string[] = [];
    const stop = turns(log);
    // a's first step spends the turn's slice: b, starting in the same turn, waits behind a.
    await Promise.all([runInSlices(work("a", 2, log, 20)), runInSlices(work("b", 3, log))]);
    stop();
    expect(log.filter((entry, i, all) => entry !== "turn" || all[i - 1] !== "turn")).toEqual(["a1", "turn", "a2", "turn", "b1", "b2", "b3"]);
  });

  it("takes the waiting works' steps in turn, one a turn when each spends the slice, so none waits for ever", async () => {
    const log: string[] = [];
    const stop = turns(log);
    await Promise.all(["a", "b", "c"].map((name) => runInSlices(work(name, 3, log, 8))));
    stop();
    const steps = log.filter((entry, i, all) => entry !== "turn" || all[i - 1] !== "turn");
    // One step between turns, the works in the order they came.
    expect(steps.filter((entry) => entry !== "turn")).toEqual(["a1", "a2", "b1", "c1", "a3", "b2", "c2", "b3", "c3"]);
    steps.forEach((entry, i) => entry !== "turn" && expect(steps[i + 1] ?? "turn").toBe("turn"));
  });

  it("stops with the signal's reason once it aborts", async () => {
    const abort = new AbortController();
    const log: string[] = [];
    const running = runInSlices(work("a", 100, log, 2), abort.signal);
    abort.abort(new Error("gone"));
    await expect(running).rejects.toThrow("gone");
    // The steps of the first slice, then nothing.
    expect(log.length).toBeLessThan(10);
    expect(log).toEqual(log.map((_, i) => `a${i + 1}`));
  });
});
