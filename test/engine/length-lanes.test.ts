import { describe, expect, it } from "vitest";
import { lanesOf, RUN_COST_ENTRIES } from "../../src/engine/length-lanes.js";

describe("length lanes", () => {
  it("puts a sequence in the lane of the shortest while padding it to that lane's longest costs less than a run of its own", () => {
    expect(RUN_COST_ENTRIES).toBe(1024);
    expect(lanesOf([8192, 2, 900, 1026, 1027], (n) => n)).toEqual([[2, 900, 1026], [1027], [8192]]);
  });
});
