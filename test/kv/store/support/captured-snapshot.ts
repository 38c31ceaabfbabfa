import { Engine } from "../../../../src/engine/engine.js";
import type { KvSnapshot } from "../../../../src/kv/store/sequence-snapshot.js";
import { loadTestModel } from "../../../support/test-model.js";
import { DEFAULT_TEST_OPTIONS } from "../../../support/test-server.js";

/** A snapshot of a real sequence: stories260K prefilled, evicted with snapkv, decoded under an h2o budget. */
export async function capturedSnapshot(): Promise<KvSnapshot> {
  const engine = new Engine(await loadTestModel(), DEFAULT_TEST_OPTIONS);
  try {
    await engine.prefill({
      sequenceId: "s",
      text: "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends, and one day she saw a big red ball.",
      eviction: { policy: "snapkv", budget: { maxTokens: 36 }, params: {} },
    });
    const decode = { sequenceId: "s", maxNewTokens: 4, sampling: { temperature: 0, topK: 0, topP: 1, seed: 0n }, stopTokenIds: [], ignoreEos: true };
    for await (const _ of engine.decode({ ...decode, eviction: { policy: "h2o", budget: { maxTokens: 36 }, params: {} } }));
    return await engine.snapshot("s");
  } finally {
    engine.close();
  }
}
