import { parse, View } from "vega";
import { compile, type TopLevelSpec } from "vega-lite";

// Tableau 10, black and cyan: twelve colours far enough apart to tell every policy's line from the others.
const PALETTE = ["#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#ff9da6", "#9d755d", "#bab0ac", "#000000", "#17becf"];
// Policies often score the same (every one at 0% recall, or ada-snapkv on snapkv): lines are drawn
// in the data's order, each narrower than the one before (WIDTH_STEP), so a line drawn over an equal
// one leaves it showing as a border; and every policy has its own dash pattern and point shape.
const NARROWEST = 1.5;
const WIDTH_STEP = 0.5;
const DASHES = [[1, 0], [6, 3], [2, 2], [8, 3, 2, 3], [3, 1], [4, 4], [10, 2], [2, 4], [6, 2, 2, 2], [12, 2, 2, 2], [3, 3], [12, 4]];
const SHAPES = ["circle", "square", "triangle-up", "diamond", "cross", "triangle-down", "triangle-right", "triangle-left", "circle", "square", "diamond", "cross"];

/** One point of a line: a policy's quality at the memory it kept. */
export interface ChartPoint {
  policy: string;
  /** Share of the KV entries kept (x). */
  kept: number;
  /** Which panel the point belongs to, e.g. "mean KL" or "query-aware". */
  panel: string;
  value: number;
}

/**
 * Quality against memory kept, one line per policy, one panel per metric or
 * setting (each panel with its own y scale), rendered to SVG by vega-lite
 * and vega without a browser.
 */
export async function lineChartSvg(
  title: string,
  points: readonly ChartPoint[],
  options: {
    panels: readonly string[];
    xTitle: string;
    /** Fixed y range (accuracy: [0, 1]); absent = fitted to each panel. */
    yDomain?: [number, number];
    /** A dashed horizontal line in every panel, e.g. the full cache's accuracy. */
    reference?: number;
  },
): Promise<string> {
  const policies = [...new Set(points.map((p) => p.policy))];
  const byPolicy = (range: unknown[]) => ({ field: "policy", type: "nominal" as const, sort: policies, scale: { type: "ordinal" as const, domain: policies, range: range.slice(0, policies.length) } });
  const widths = policies.map((_, i) => NARROWEST + WIDTH_STEP * (policies.length - 1 - i));
  const spec: TopLevelSpec = {
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    title,
    data: { values: points.map((p) => ({ ...p })) },
    facet: { column: { field: "panel", type: "nominal", sort: [...options.panels], title: null } },
    spec: {
      width: 260,
      height: 220,
      layer: [
        {
          mark: { type: "line", point: true },
          encoding: {
            x: { field: "kept", type: "quantitative", title: options.xTitle, scale: { domain: [0, 1] } },
            y: { field: "value", type: "quantitative", title: null, scale: options.yDomain ? { domain: options.yDomain } : { zero: false } },
            color: { ...byPolicy(PALETTE), title: "policy" },
            strokeWidth: { ...byPolicy(widths), legend: null },
            strokeDash: { ...byPolicy(DASHES.map((d) => [...d])), title: "policy" },
            shape: { ...byPolicy(SHAPES), title: "policy" },
          },
        },
        ...(options.reference === undefined ? [] : [{ mark: { type: "rule" as const, strokeDash: [4, 4], color: "#666" }, encoding: { y: { datum: options.reference } } }]),
      ],
    },
    resolve: { scale: { y: "independent" } },
    config: { font: "sans-serif" },
  };
  const view = new View(parse(compile(spec).spec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
