import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DecodeBatcher } from "../../src/engine/decode-batcher.js";
import { EngineError } from "../../src/engine/engine-error.js";

/** The next turn of the event loop (after setImmediate callbacks queued before it). */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Until after the batcher's own wait of one turn that a batch ending may start. */
const settle = async () => {
  await nextTurn();
  await nextTurn();
};

/** Every stream the same length: one lane, so these tests see batching alone (length lanes have their own tests). */
const sameLane = () => 0;

/** The batcher takes its streams as objects (fair-share charges them in a WeakMap): one box per name or number. */
function boxes<K>() {
  const boxed = new Map<K, { key: K }>();
  return (key: K) => boxed.get(key) ?? boxed.set(key, { key }).get(key)!;
}

/** A batcher of named streams whose batches are recorded (by name) and each finish when the test says so. */
function recording<K>(maxBatchSize: number) {
  const batches: K[][] = [];
  const finish: ((error?: unknown) => void)[] = [];
  let running = 0;
  let overlapped = false;
  const box = boxes<K>();
  const inner = new DecodeBatcher<{ key: K }>((batch) => {
    batches.push(batch.map((b) => b.key));
    if (++running > 1) overlapped = true;
    return new Promise<void>((resolve, reject) => finish.push((error) => {
      running--;
      if (error) reject(error);
      else resolve();
    }));
  }, maxBatchSize, sameLane);
  const batcher = {
    join: () => inner.join(),
    leave: () => inner.leave(),
    step: (key: K, signal?: AbortSignal) => inner.step(box(key), signal),
    get idle() {
      return inner.idle;
    },
  };
  return { batcher, batches, finish, overlapped: () => overlapped };
}

/** Settles `promise` into what it resolved to or threw, without an unhandled rejection. */
function outcome(promise: Promise<void>): { state: () => "pending" | "done" | unknown } {
  let state: "pending" | "done" | unknown = "pending";
  promise.then(() => (state = "done"), (error) => (state = error));
  return { state: () => state };
}

describe("DecodeBatcher", () => {
  it("runs the steps of every stream in the decode loop together, and resolves each once its batch is done", async () => {
    const { batcher, batches, finish } = recording<string>(8);
    batcher.join();
    batcher.join();
    const a = outcome(batcher.step("a"));
    const b = outcome(batcher.step("b"));
    expect(batches).toEqual([["a", "b"]]);
    await nextTurn();
    expect([a.state(), b.state()]).toEqual(["pending", "pending"]);
    finish[0]();
    await settle();
    expect([a.state(), b.state()]).toEqual(["done", "done"]);
  });

  it("runs at most maxBatchSize steps together, the rest next, in the order asked", async () => {
    const { batcher, batches, finish } = recording<number>(2);
    for (let i = 0; i < 5; i++) batcher.join();
    const steps = [0, 1, 2, 3, 4].map((i) => outcome(batcher.step(i)));
    expect(batches).toEqual([[0, 1]]);
    finish[0]();
    await settle();
    expect(batches).toEqual([[0, 1], [2, 3]]);
    finish[1]();
    await settle();
    expect(batches).toEqual([[0, 1], [2, 3], [4]]);
    finish[2]();
    await settle();
    expect(steps.map((s) => s.state())).toEqual(["done", "done", "done", "done", "done"]);
  });

  it("does not wait past the event loop's next turn for a stream busy elsewhere", async () => {
    const { batcher, batches } = recording<string>(8);
    batcher.join();
    batcher.join();
    void batcher.step("a");
    expect(batches).toEqual([]);
    await nextTurn();
    expect(batches).toEqual([["a"]]);
  });

  it("runs a lone step at once outside any decode loop, and starts a batch when the stream it waited for leaves", async () => {
    const lone = recording<string>(8);
    void lone.batcher.step("x");
    expect(lone.batches).toEqual([["x"]]);
    expect(lone.batcher.idle).toBe(true);

    const { batcher, batches, finish } = recording<string>(8);
    batcher.join();
    batcher.join();
    batcher.join();
    expect(batcher.idle).toBe(false);
    void batcher.step("a");
    void batcher.step("b");
    batcher.leave();
    expect(batches).toEqual([["a", "b"]]);
    finish[0]();
    batcher.leave();
    batcher.leave();
    expect(batcher.idle).toBe(true);
  });

  it("batches the steps asked while a batch runs into the next one", async () => {
    const { batcher, batches, finish } = recording<string>(8);
    batcher.join();
    void batcher.step("a");
    batcher.join();
    batcher.join();
    void batcher.step("b");
    void batcher.step("c");
    await nextTurn();
    expect(batches).toEqual([["a"]]);
    finish[0]();
    await settle();
    expect(batches).toEqual([["a"], ["b", "c"]]);
  });

  it("rejects every step of a failed batch with its error, and runs the next batch", async () => {
    const { batcher, batches, finish } = recording<string>(2);
    for (let i = 0; i < 3; i++) batcher.join();
    const steps = ["a", "b", "c"].map((item) => outcome(batcher.step(item)));
    const failure = new Error("runner failed");
    finish[0](failure);
    await settle();
    expect(steps.map((s) => s.state())).toEqual([failure, failure, "pending"]);
    expect(batches).toEqual([["a", "b"], ["c"]]);
    finish[1]();
    await settle();
    expect(steps[2].state()).toBe("done");
  });

  it("drops a step cancelled before its batch starts, and lets a running step complete", async () => {
    const { batcher, batches, finish } = recording<string>(8);
    batcher.join();
    const running = new AbortController();
    const a = outcome(batcher.step("a", running.signal));
    expect(batches).toEqual([["a"]]);
    batcher.join();
    batcher.join();
    const queued = new AbortController();
    const b = outcome(batcher.step("b", queued.signal));
    const c = outcome(batcher.step("c"));
    queued.abort();
    running.abort();
    await nextTurn();
    expect(b.state()).toBeInstanceOf(EngineError);
    expect((b.state() as EngineError).code).toBe("CANCELLED");
    expect(a.state()).toBe("pending");
    finish[0]();
    await settle();
    expect(a.state()).toBe("done");
    expect(batches).toEqual([["a"], ["c"]]);
    finish[1]();
    await settle();
    expect(c.state()).toBe("done");

    const cancelled = new AbortController();
    cancelled.abort();
    await expect(batcher.step("d", cancelled.signal)).rejects.toMatchObject({ code: "CANCELLED" });
    expect(batches.flat()).not.toContain("d");
  });

  it("property: every step runs exactly once, in the order asked, batches never overlap or exceed maxBatchSize, and cancelled steps never run", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 4 }),
        fc.array(fc.record({ turn: fc.nat(3), cancel: fc.boolean(), streams: fc.integer({ min: 0, max: 3 }) }), { minLength: 1, maxLength: 12 }),
        async (maxBatchSize, plan) => {
          const ran: number[] = [];
          let running = false;
          const box = boxes<number>();
          const batcher = new DecodeBatcher<{ key: number }>(async (batch) => {
            expect(running).toBe(false);
            expect(batch.length).toBeGreaterThan(0);
            expect(batch.length).toBeLessThanOrEqual(maxBatchSize);
            running = true;
            ran.push(...batch.map((b) => b.key));
            await nextTurn();
            running = false;
          }, maxBatchSize, sameLane);
          const results: Promise<"done" | "cancelled">[] = [];
          const controllers: AbortController[] = [];
          for (let turn = 0; turn < 4; turn++) {
            plan.forEach((step, i) => {
              if (step.turn !== turn) return;
              for (let s = 0; s < step.streams; s++) batcher.join();
              const controller = new AbortController();
              controllers[i] = controller;
              results[i] = batcher.step(box(i), controller.signal).then(
                () => "done" as const,
                (error) => {
                  expect(error).toBeInstanceOf(EngineError);
                  return "cancelled" as const;
                },
              );
            });
            plan.forEach((step, i) => {
              if (step.turn === turn && step.cancel) controllers[i].abort();
            });
            await nextTurn();
          }
          const outcomes = await Promise.all(results.filter((r) => r !== undefined));
          const asked = plan.map((step, i) => ({ ...step, i })).filter((step) => results[step.i] !== undefined);
          // Each step ran at most once; those that report done ran; cancelled ones did not.
          expect(new Set(ran).size).toBe(ran.length);
          asked.forEach((step, k) => {
            if (outcomes[k] === "done") expect(ran).toContain(step.i);
            else expect(ran).not.toContain(step.i);
          });
          // First asked, first run: by turn, then by index within a turn.
          const order = [...asked].sort((x, y) => x.turn - y.turn || x.i - y.i).map((step) => step.i);
          expect(ran).toEqual(order.filter((i) => ran.includes(i)));
        },
      ),
      { numRuns: 100 },
    );
  });
});

describe("DecodeBatcher with two runs at once (session threads)", () => {
  /** Streams by name, their cached length in the name's number: "short 2", "long 5000". */
  const entriesOf = (item: { key: string }) => Number(item.key.split(" ")[1]);

  function parallel() {
    const box = boxes<string>();
    const batches: { keys: string[]; lane: number; lanes: number }[] = [];
    const finish = new Map<string, () => void>();
    const batcher = new DecodeBatcher<{ key: string }>(
      (batch, lane, lanes) => {
        const keys = batch.map((b) => b.key);
        batches.push({ keys, lane, lanes });
        return new Promise<void>((resolve) => finish.set(keys.join(","), resolve));
      },
      8,
      entriesOf,
      2,
    );
    return { batcher, batches, finish, step: (key: string) => batcher.step(box(key)) };
  }

  it("steps a short lane beside a long one, many times while one long step runs", async () => {
    const { batcher, batches, finish, step } = parallel();
    batcher.join();
    batcher.join();
    const long = outcome(step("long 5000"));
    await nextTurn();
    expect(batches).toEqual([{ keys: ["long 5000"], lane: 0, lanes: 1 }]);
    for (let i = 0; i < 3; i++) {
      const short = outcome(step("short 2"));
      await settle();
      expect(batches.at(-1)).toEqual({ keys: ["short 2"], lane: 0, lanes: 2 });
      finish.get("short 2")!();
      await settle();
      expect(short.state()).toBe("done");
    }
    expect(long.state()).toBe("pending");
    finish.get("long 5000")!();
    await settle();
    expect(long.state()).toBe("done");
    expect(batches.map((b) => b.keys.join(","))).toEqual(["long 5000", "short 2", "short 2", "short 2"]);
  });

  it("never makes a short lane wait for a long step; the long lane's next step waits for the short one owed more", async () => {
    const { batcher, batches, finish, step } = parallel();
    batcher.join();
    batcher.join();
    const long = outcome(step("long 5000"));
    await nextTurn();
    // The long step was charged 1024 + 5000 entries as it started; each short one 1024 + 2.
    for (let i = 0; i < 8; i++) {
      const short = outcome(step("short 2"));
      await settle();
      finish.get("short 2")!();
      await settle();
      expect(short.state()).toBe("done");
    }
    finish.get("long 5000")!();
    await settle();
    expect(long.state()).toBe("done");
    // Both ask: the long stream is owed more (6024 against 8208) and goes first; the short one steps beside it.
    const [long2, short2] = [outcome(step("long 5000")), outcome(step("short 2"))];
    await settle();
    expect(batches.slice(-2).map((b) => b.keys[0])).toEqual(["long 5000", "short 2"]);
    finish.get("long 5000")!();
    await settle();
    // The long one (now charged 12048) asks while the short one (8208, shorter) steps: it waits.
    const long3 = outcome(step("long 5000"));
    await settle();
    expect(batches).toHaveLength(11);
    finish.get("short 2")!();
    await settle();
    expect([long2.state(), short2.state(), long3.state()]).toEqual(["done", "done", "pending"]);
    expect(batches.at(-1)!.keys).toEqual(["long 5000"]);
  });

  it("runs one batch of a lane at a time: a stream of a stepping lane joins its next batch", async () => {
    const { batcher, batches, finish, step } = parallel();
    for (let i = 0; i < 3; i++) batcher.join();
    const first = outcome(step("a 2"));
    await nextTurn();
    const second = outcome(step("b 3"));
    await settle();
    // Same lane as the running batch: it waits, though a second run is free.
    expect(batches.map((b) => b.keys)).toEqual([["a 2"]]);
    const long = outcome(step("long 5000"));
    await settle();
    expect(batches.map((b) => b.keys)).toEqual([["a 2"], ["long 5000"]]);
    finish.get("a 2")!();
    await settle();
    expect(first.state()).toBe("done");
    expect(batches.map((b) => b.keys)).toEqual([["a 2"], ["long 5000"], ["b 3"]]);
    finish.get("b 3")!();
    finish.get("long 5000")!();
    await settle();
    expect([second.state(), long.state()]).toEqual(["done", "done"]);
  });
});

describe("DecodeBatcher with one thread and long steps in stages", () => {
  /** Streams by name, their cached length in the name's number; steps over 4096 slots or more go in stages. */
  const entriesOf = (item: { key: string }) => Number(item.key.split(" ")[1]);

  function oneThreadInStages() {
    const box = boxes<string>();
    const batches: string[] = [];
    const finish = new Map<string, () => void>();
    const staged: string[] = [];
    const batcher = new DecodeBatcher<{ key: string }>(
      (batch, _lane, _lanes, inStages) => {
        const keys = batch.map((b) => b.key).join(",");
        batches.push(keys);
        if (inStages) staged.push(keys);
        return new Promise<void>((resolve) => finish.set(keys, resolve));
      },
      8,
      entriesOf,
      1,
      entriesOf,
      (slots) => slots >= 4096,
    );
    return { batcher, batches, staged, finish, step: (key: string) => outcome(batcher.step(box(key))) };
  }

  it("runs a long stream's steps in stages only while another stream decodes", async () => {
    const { batcher, batches, staged, finish, step } = oneThreadInStages();
    batcher.join();
    const alone = step("long 5000");
    await settle();
    finish.get("long 5000")!();
    await settle();
    expect(alone.state()).toBe("done");
    batcher.join();
    const long = step("long 5000");
    await settle();
    const short = step("short 2");
    await settle();
    expect(batches).toEqual(["long 5000", "long 5000", "short 2"]);
    // Alone it would only pay for the stages; with another stream decoding it goes in them, and that one's steps between.
    expect(staged).toEqual(["long 5000"]);
    finish.get("short 2")!();
    finish.get("long 5000")!();
    await settle();
    expect([long.state(), short.state()]).toEqual(["done", "done"]);
  });

  it("starts one run not in stages beside a staged one, and nothing beside a whole one", async () => {
    const { batcher, batches, finish, step } = oneThreadInStages();
    for (let i = 0; i < 3; i++) batcher.join();
    const long = step("long 5000");
    await settle();
    const short = step("short 2");
    const mid = step("mid 3000");
    await settle();
    // The short lane goes beside the staged long step; the mid one (whole too) waits for that room.
    expect(batches).toEqual(["long 5000", "short 2"]);
    finish.get("short 2")!();
    await settle();
    expect(short.state()).toBe("done");
    expect(batches).toEqual(["long 5000", "short 2", "mid 3000"]);
    finish.get("long 5000")!();
    await settle();
    expect(long.state()).toBe("done");
    // A whole step runs on the one thread: neither the short lane nor the long one starts beside it.
    const [short2, long2] = [step("short 2"), step("long 5000")];
    await settle();
    expect(batches).toHaveLength(3);
    finish.get("mid 3000")!();
    await settle();
    expect(mid.state()).toBe("done");
    expect(batches).toHaveLength(4);
    finish.get(batches[3])!();
    await settle();
    expect(batches).toHaveLength(5);
    finish.get(batches[4])!();
    await settle();
    expect([short2.state(), long2.state()]).toEqual(["done", "done"]);
  });

  it("never starts a staged run beside another", async () => {
    const { batcher, batches, finish, step } = oneThreadInStages();
    batcher.join();
    batcher.join();
    const first = step("long 5000");
    const second = step("longer 9000");
    await settle();
    expect(batches).toEqual(["long 5000"]);
    finish.get("long 5000")!();
    await settle();
    expect(first.state()).toBe("done");
    expect(batches).toEqual(["long 5000", "longer 9000"]);
    finish.get("longer 9000")!();
    await settle();
    expect(second.state()).toBe("done");
  });
});

describe("DecodeBatcher's fair turns", () => {
  it("charges a stream's runs for the slots they attend, the room its cache grew ahead included", async () => {
    /** "name entries slots": a stream's longest head, then the slots its step attends. */
    const entriesOf = (item: { key: string }) => Number(item.key.split(" ")[1]);
    const attendedOf = (item: { key: string }) => Number(item.key.split(" ")[2]);
    const orderOf = async (long: string) => {
      const box = boxes<string>();
      const order: string[] = [];
      const batcher = new DecodeBatcher<{ key: string }>(
        async (batch) => void order.push(batch[0].key.split(" ")[0]),
        8,
        entriesOf,
        1,
        attendedOf,
      );
      batcher.join();
      batcher.join();
      const stream = async (key: string) => {
        while (order.length < 14) await batcher.step(box(key));
        batcher.leave();
      };
      await Promise.all([stream("short 2 16"), stream(long)]);
      return order.slice(0, 14);
    };
    const short = (n: number) => Array<string>(n).fill("short");
    // Each short step is charged 1024 + 16; the long one's 1024 + its slots: 10,000 (5,000 held) against 5,000.
    expect(await orderOf("long 5000 10000")).toEqual(["short", "long", ...short(10), "long", "short"]);
    expect(await orderOf("long 5000 5000")).toEqual(["short", "long", ...short(5), "long", ...short(6)]);
  });
});
