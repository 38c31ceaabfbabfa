import { DEFAULT_ENGINE_OPTIONS, type EngineOptions } from "../src/engine/engine-options.js";

/** The served defaults with room for long benchmark runs: 4 GiB of KV, 16k entries per head, positions past the trained context, an hour before idle sequences go. */
export const BENCH_ENGINE_OPTIONS: Readonly<EngineOptions> = {
  ...DEFAULT_ENGINE_OPTIONS,
  kvBudgetBytes: 4 * 2 ** 30,
  maxSequenceTokens: 16_384,
  allowPastContext: true,
  sequenceTtlMs: 3_600_000,
};
