import { describe, expect, it } from "vitest";
import { LaneArenas } from "../../src/kv/lane-arenas.js";

describe("LaneArenas", () => {
  const shape = { kvHeads: 1, headSize: 2 };

  it("keeps one arena per lane, and frees those of lanes gone", () => {
    const arenas = new LaneArenas(1, shape);
    const [short, long] = [arenas.of(0, 2), arenas.of(1, 2)];
    expect(arenas.of(0, 2)).toBe(short);
    expect(arenas.of(1, 2)).toBe(long);
    expect(arenas.of(0, 1)).toBe(short);
    expect(arenas.of(1, 2)).not.toBe(long);
  });

  it("leaves an arena still laying out a batch to that batch: the lane gets another", () => {
    const arenas = new LaneArenas(1, shape);
    const first = arenas.of(1, 2);
    first.gather([]).next(); // mid-way through laying out a batch
    expect(first.busy).toBe(true);
    const second = arenas.of(1, 2);
    expect(second).not.toBe(first);
    // Lanes renumbered while it is busy: it is not freed under its batch.
    arenas.of(0, 1);
    expect(first.busy).toBe(true);
  });
});
