import type { SequenceStats } from "../gen/kvwarden/v1/kvwarden.js";
import type { RecallTask } from "./recall-tasks.js";

/**
 * What an eviction left of what a recall answer needs, per layer (read from
 * Stats' kept positions): the share of the asked facts' tokens kept over the
 * layer's KV heads, the share of heads keeping a whole fact, and the share
 * keeping BOS (position 0, the attention sink).
 */
export interface Retention {
  needleTokens: number[];
  wholeNeedle: number[];
  bos: number[];
}

export function retentionOf(sequence: SequenceStats, task: RecallTask): Retention {
  const perLayer = sequence.layers.map((layer) => {
    let tokens = 0;
    let whole = 0;
    let bos = 0;
    for (const { positions } of layer.headPositions) {
      const kept = new Set(positions);
      if (kept.has(0)) bos++;
      for (const { start, end } of task.needles) {
        let held = 0;
        for (let p = start; p < end; p++) if (kept.has(p)) held++;
        tokens += held / (end - start);
        if (held === end - start) whole++;
      }
    }
    const heads = layer.headPositions.length;
    const facts = heads * task.needles.length;
    return { needleTokens: tokens / facts, wholeNeedle: whole / facts, bos: bos / heads };
  });
  return {
    needleTokens: perLayer.map((l) => l.needleTokens),
    wholeNeedle: perLayer.map((l) => l.wholeNeedle),
    bos: perLayer.map((l) => l.bos),
  };
}

/** The per-layer mean over tasks; undefined when there is none. */
export function meanRetention(retentions: readonly Retention[]): Retention | undefined {
  if (retentions.length === 0) return undefined;
  const mean = (pick: (r: Retention) => number[]) => pick(retentions[0]).map((_, l) => retentions.reduce((sum, r) => sum + pick(r)[l], 0) / retentions.length);
  return { needleTokens: mean((r) => r.needleTokens), wholeNeedle: mean((r) => r.wholeNeedle), bos: mean((r) => r.bos) };
}
