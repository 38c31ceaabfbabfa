import type { Sequence } from "./sequence.js";
import type { EngineModel } from "../model/engine-model.js";

/** One step shape run at start-up: S tokens onto a cache of `past` entries. */
export interface WarmedShape {
  tokens: number;
  past: number;
  ms: number;
}

/**
 * Runs the step shapes every server meets first: a full prefill chunk onto an empty cache and onto one
 * chunk, and a decode step, on every session thread at once. onnxruntime plans and allocates for a
 * shape on its first run (1.5-2.8 s against 1.0 s steady on the ~200M model: docs/performance.md), a
 * cost the first caller would otherwise pay. `scratch` is a sequence outside the engine's table and
 * budget; it is released at the end, so the warm-up leaves nothing behind.
 */
export async function warmUp(model: EngineModel, chunkTokens: number, contextLimit: number, scratch: () => Sequence): Promise<WarmedShape[]> {
  const { runner, config } = model;
  const chunk = Math.min(chunkTokens, Math.floor((contextLimit - 1) / 2));
  if (chunk < 1) return [];
  const steps = [chunk, chunk, 1];
  const tokens = (count: number) => Array.from({ length: count }, (_, i) => i % config.vocabSize);
  const perThread = await Promise.all(
    Array.from({ length: runner.parallelism }, async () => {
      const sequence = scratch();
      try {
        sequence.reserveRoom(2 * chunk + 1);
        const shapes: WarmedShape[] = [];
        for (const count of steps) {
          const started = performance.now();
          const past = sequence.fedTokens;
          const out = await runner.run({ tokens: tokens(count), firstPosition: past, past: sequence.layers, queryRows: 1 });
          sequence.absorbStep(out, tokens(count), 0, 1, config.vocabSize);
          shapes.push({ tokens: count, past, ms: Math.round(performance.now() - started) });
        }
        return shapes;
      } finally {
        sequence.release();
      }
    }),
  );
  return perThread[0];
}
