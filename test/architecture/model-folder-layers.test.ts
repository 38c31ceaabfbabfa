import { fileURLToPath } from "node:url";
import madge from "madge";
import { describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("../../", import.meta.url));

/**
 * src/model's folders, lowest first (docs/architecture.md, "The model"): a folder may import
 * only folders before it, so their dependencies run one way (issue 18). The files directly in
 * src/model (loading a model) sit above them all.
 */
const LAYERS = ["config", "sampling", "tokenizers", "checkpoints", "graph", "conversion", "runners", ""];

/** The layer of a module under src/model ("" for the top), or null outside it. */
function folderOf(module: string): string | null {
  const match = /^model\/(?:([^/]+)\/)?[^/]+$/.exec(module);
  return match ? (match[1] ?? "") : null;
}

const imports = () => madge(`${root}src/model`, { baseDir: `${root}src`, fileExtensions: ["ts"], tsConfig: `${root}tsconfig.json`, excludeRegExp: [/\.d\.ts$/] });

describe("src/model folders", () => {
  it("are each a known layer", async () => {
    const graph = await imports();
    expect(graph.warnings().skipped).toEqual([]);
    const folders = new Set(Object.keys(graph.obj()).map(folderOf).filter((folder) => folder !== null));
    expect([...folders].filter((folder) => !LAYERS.includes(folder))).toEqual([]);
  });

  it("import only the folders below them", async () => {
    const graph = await imports();
    const upward: string[] = [];
    let crossing = 0;
    for (const [from, imports] of Object.entries(graph.obj())) {
      for (const to of imports) {
        const [importer, imported] = [folderOf(from), folderOf(to)];
        if (importer === null || imported === null || importer === imported) continue;
        crossing++;
        if (LAYERS.indexOf(imported) > LAYERS.indexOf(importer)) upward.push(`${from} -> ${to}`);
      }
    }
    expect(crossing).toBeGreaterThan(20);
    expect(upward).toEqual([]);
  });
});
