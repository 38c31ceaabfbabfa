import { DecodeBudget } from "../../../../src/engine/decode-budget.js";
import type { Caller, Engine } from "../../../../src/engine/engine.js";
import { Sequence } from "../../../../src/engine/sequence.js";
import { restoreSnapshot, type KvSnapshot } from "../../../../src/kv/store/sequence-snapshot.js";
import { resolveEviction } from "../../../../src/policies/registry.js";
import { evictionTelemetry } from "../../../../src/telemetry/engine-telemetry.js";

/*
 * Phase 1 of the store (docs/kv-store.md) has no Engine call that offloads or restores yet: these
 * reach into the engine's private sequence table (test-only, as test/fuzz/support/cache-digest.ts does)
 * to take a sequence out and to put a restored one in.
 */

const keyOf = (caller: Caller, sequenceId: string) => `${caller.tenant}\u0000${sequenceId}`;

function table(engine: Engine): Map<string, Sequence> {
  return engine["sequences"] as Map<string, Sequence>;
}

export function sequenceIn(engine: Engine, sequenceId: string, caller: Caller = { tenant: "" }): Sequence {
  const sequence = table(engine).get(keyOf(caller, sequenceId));
  if (!sequence) throw new Error(`no sequence '${sequenceId}'`);
  return sequence;
}

/** Restores `snapshot` as a new sequence of `engine`, made as the engine makes its own. */
export function restoreInto(engine: Engine, sequenceId: string, snapshot: KvSnapshot, caller: Caller = { tenant: "" }): Sequence {
  const { config, runner } = engine.model;
  const { recentQueryRows } = engine.options;
  const shape = { layers: config.layers, heads: config.heads, kvHeads: config.kvHeads, headSize: config.headSize };
  const sequence = new Sequence(sequenceId, caller.tenant, engine.pool, shape, recentQueryRows, runner.kvDtype);
  restoreSnapshot(snapshot, sequence, ({ spec }) =>
    DecodeBudget.create(spec, { ...resolveEviction(spec, sequence.maxHeadLength, recentQueryRows), observer: evictionTelemetry }, sequence.maxHeadLength),
  );
  table(engine).set(keyOf(caller, sequenceId), sequence);
  return sequence;
}
