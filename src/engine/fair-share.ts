import { RUN_COST_ENTRIES } from "./length-lanes.js";

/**
 * Which lane of decode steps runs next, so that streams share the model's
 * time rather than its steps: a stream is charged what its steps cost (its
 * share of the run's fixed cost, plus the slots it attended, padding and
 * room included), and the lane holding the least charged stream runs next (as
 * a fair scheduler runs the task with the least virtual time). A short stream
 * beside a long one thus takes many steps per step of the long one instead of
 * one each. Charges come from that cost model, not from clocks, so the order
 * of steps is reproducible.
 */
export class FairShare<T extends object> {
  private readonly charged = new WeakMap<T, number>();
  /** The least charge of any stream still stepping: a stream that (re)joins starts there, with no credit saved up. */
  private floor = 0;

  charge(item: T): number {
    return Math.max(this.charged.get(item) ?? 0, this.floor);
  }

  /** The index of the lane to run next. */
  pick(lanes: readonly (readonly T[])[]): number {
    let best = 0;
    let least = Infinity;
    lanes.forEach((lane, index) => {
      const charge = Math.min(...lane.map((item) => this.charge(item)));
      if (charge < least) [best, least] = [index, charge];
    });
    return best;
  }

  /** Charges each member of a run, as it starts, that attends `entries` per sequence; `waiting` are the other streams asking or stepping. */
  ran(run: readonly T[], entries: number, waiting: readonly T[]): void {
    // The floor as the run starts: a stream joining meanwhile is not charged for this run's cost.
    this.floor = Math.max(this.floor, Math.min(...[...run, ...waiting].map((item) => this.charge(item))));
    for (const item of run) this.charged.set(item, this.charge(item) + RUN_COST_ENTRIES / run.length + entries);
  }
}
