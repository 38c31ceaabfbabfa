import { describe, expect, it } from "vitest";
import { lineChartSvg } from "../../src/eval/chart.js";

/** The line marks of a rendered chart, in drawing order: policy, stroke width, dash pattern. */
function lines(svg: string): { policy: string; width: number; dash: string }[] {
  return [...svg.matchAll(/<path aria-label="[^"]*policy: ([^"]+)" role="graphics-symbol" aria-roledescription="line mark"[^>]*stroke-width="([\d.]+)"[^>]*stroke-dasharray="([^"]*)"/g)].map(
    ([, policy, width, dash]) => ({ policy, width: Number(width), dash }),
  );
}

describe("the eval report's line charts", () => {
  it("leave every policy visible where their lines coincide: each drawn narrower than the ones under it, with its own dash", async () => {
    // Every policy at 0% recall, as on the recall model at small budgets.
    const policies = ["snapkv", "ada-snapkv", "pyramidkv", "ada-pyramidkv", "h2o", "tova", "streaming_llm", "knorm"];
    const points = policies.flatMap((policy) => [0.1, 0.2, 0.5].map((kept) => ({ policy, kept, panel: "query-aware", value: 0 })));
    const drawn = lines(await lineChartSvg("recall", points, { panels: ["query-aware"], xTitle: "share kept", yDomain: [0, 1] }));
    expect(drawn.map((l) => l.policy)).toEqual(policies);
    for (let i = 1; i < drawn.length; i++) expect(drawn[i].width).toBeLessThan(drawn[i - 1].width);
    expect(new Set(drawn.map((l) => l.dash)).size).toBe(policies.length);
  });
});
