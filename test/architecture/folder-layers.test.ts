import { fileURLToPath } from "node:url";
import madge from "madge";
import { describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("../../", import.meta.url));

/** The folder of src/ a module is in ("" for the files directly in src/). */
function folderOf(module: string): string {
  const slash = module.indexOf("/");
  return slash < 0 ? "" : module.slice(0, slash);
}

/** The cycles of a directed graph, each as the path that closes it (depth-first search). */
function cyclesOf(edges: Map<string, Set<string>>): string[][] {
  const cycles: string[][] = [];
  const done = new Set<string>();
  const visit = (node: string, path: string[]) => {
    const at = path.indexOf(node);
    if (at >= 0) return void cycles.push([...path.slice(at), node]);
    if (done.has(node)) return;
    for (const next of edges.get(node) ?? []) visit(next, [...path, node]);
    done.add(node);
  };
  for (const node of edges.keys()) visit(node, []);
  return cycles;
}

/**
 * Dependencies between src/'s folders run one way (issue 18): a folder that
 * needs another's type while that one needs it back shows a type in the wrong
 * folder, which belongs in the lower one. Type-only imports count.
 */
describe("src/ folders", () => {
  it("depend on each other one way: the folder graph has no cycle", async () => {
    const graph = await madge(`${root}src`, { baseDir: `${root}src`, fileExtensions: ["ts"], tsConfig: `${root}tsconfig.json`, excludeRegExp: [/\.d\.ts$/] });
    expect(graph.warnings().skipped).toEqual([]);
    const edges = new Map<string, Set<string>>();
    for (const [from, imports] of Object.entries(graph.obj())) {
      for (const to of imports) {
        const [importer, imported] = [folderOf(from), folderOf(to)];
        if (importer === imported) continue;
        edges.set(importer, (edges.get(importer) ?? new Set()).add(imported));
      }
    }
    // The test sees the whole tree: server, engine, kv and model are all there.
    expect([...edges.keys()]).toEqual(expect.arrayContaining(["server", "engine", "kv", "model"]));
    expect(cyclesOf(edges).map((cycle) => cycle.join(" -> "))).toEqual([]);
  });
});
