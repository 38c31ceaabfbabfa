import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runFidelity } from "../../src/eval/fidelity.js";
import { policyVariants, selectVariants } from "../../src/eval/policy-variants.js";
import { silentProgress } from "../../src/eval/progress.js";
import { openSidecar, type Sidecar } from "../../src/eval/sidecar.js";
import { MODEL_FILES } from "../support/test-model.js";

describe("fidelity at a budget below a policy's minimum", () => {
  let sidecar: Sidecar;
  beforeAll(async () => {
    sidecar = await openSidecar({ model: { files: MODEL_FILES } });
  });
  afterAll(() => sidecar.close());

  it("reports the cell as n/a with the minimum instead of failing, and runs the others", async () => {
    const info = await sidecar.client.info();
    // 2% of a 320-token context is 6 entries: below SnapKV's window + 1 = 9, enough for streaming_llm's 5.
    const variants = selectVariants(policyVariants(info, 8), ["snapkv", "streaming_llm"]);
    const report = await runFidelity(sidecar.client, info, { prompts: 1, budgets: [0.02], firstSeed: 1, variants, window: 8, concurrency: 2 }, silentProgress);
    const cell = (label: string) => report.cells.find((c) => c.label === label)!;
    expect(cell("snapkv")).toEqual({ label: "snapkv", keepFraction: 0.02, unavailable: "n/a (budget below minimum 9)" });
    expect(cell("streaming_llm").budgetTokens).toBe(6);
    expect(cell("streaming_llm").quality!.tokens).toBe(report.full.tokens);
  });
});
