import { DecodeBudget } from "../../../../src/engine/decode-budget.js";
import type { Caller, Engine } from "../../../../src/engine/engine.js";
import type { Sequence } from "../../../../src/engine/sequence.js";
import type { SequenceTable } from "../../../../src/engine/sequence-table.js";
import { restoreSnapshot, type KvSnapshot } from "../../../../src/kv/store/sequence-snapshot.js";
import { resolveEviction } from "../../../../src/policies/registry.js";
import { evictionTelemetry } from "../../../../src/telemetry/engine-telemetry.js";

/*
 * Phase 1 of the store (docs/kv-store.md) has no Engine call that offloads or restores yet: these
 * reach into the engine's private sequence table (`engine["table"]`) (test-only, as test/fuzz/support/cache-digest.ts does)
 * to take a sequence out and to put a restored one in.
 */

function table(engine: Engine): SequenceTable {
  return engine["table"] as SequenceTable;
}

export function sequenceIn(engine: Engine, sequenceId: string, caller: Caller = { tenant: "" }): Sequence {
  return table(engine).lookup(caller, sequenceId);
}

/** Restores `snapshot` as a new sequence of `engine`, made by the engine's own sequence table. */
export function restoreInto(engine: Engine, sequenceId: string, snapshot: KvSnapshot, caller: Caller = { tenant: "" }): Sequence {
  const { recentQueryRows } = engine.options;
  const sequence = table(engine).create(caller, sequenceId);
  try {
    restoreSnapshot(snapshot, sequence, ({ spec }) =>
      DecodeBudget.create(spec, { ...resolveEviction(spec, sequence.maxHeadLength, recentQueryRows), observer: evictionTelemetry }, sequence.maxHeadLength),
    );
  } catch (error) {
    table(engine).remove(sequence);
    throw error;
  }
  return sequence;
}
