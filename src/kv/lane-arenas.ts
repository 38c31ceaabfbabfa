import { BatchArena } from "./batch-arena.js";
import type { KvShape } from "./layer-cache.js";

/**
 * One BatchArena per lane of decode steps (lane 0 the shortest): lanes take
 * turns, and sharing one arena would recopy (and resize) it on every turn.
 * An arena whose lane is gone is freed.
 */
export class LaneArenas {
  private arenas: (BatchArena | undefined)[] = [];

  constructor(
    private readonly layerCount: number,
    private readonly shape: KvShape,
  ) {}

  get bytes(): number {
    return this.arenas.reduce((sum, arena) => sum + (arena?.bytes ?? 0), 0);
  }

  /**
   * The arena of lane `lane` of `lanes`. One that another batch is still laying out (lanes renumbered
   * while it ran, with more than one session thread) is left to that batch: the lane gets a new one.
   */
  of(lane: number, lanes: number): BatchArena {
    for (const arena of this.arenas.splice(lanes)) if (!arena?.busy) arena?.clear();
    if (this.arenas[lane]?.busy) this.arenas[lane] = undefined;
    return (this.arenas[lane] ??= new BatchArena(this.layerCount, this.shape));
  }

  /** Frees every arena's memory. */
  clear(): void {
    for (const arena of this.arenas) arena?.clear();
    this.arenas = [];
  }
}
