/**
 * `make bench`, per-sequence overhead (issue 20, target 6): the bytes the real allocator takes for a
 * sequence's recent-query ring (SlabPool + RecentQueryRing, as the engine sizes it for the policy named:
 * docs/policies.md, in the KV dtype), for stories260K, the ~200M bench Llama and a Llama-3-8B shape, with
 * float32 and float16 KV, beside the K/V one cached token costs. Needs no model: shapes only.
 * Deterministic, so --quick changes nothing.
 */
import { Command } from "commander";
import { floatsPerEntry, type KvDtype } from "../src/kv/layer-cache.js";
import { RecentQueryRing } from "../src/kv/recent-queries.js";
import { SlabPool } from "../src/kv/slab-pool.js";
import { POLICIES } from "../src/policies/registry.js";
import { llama200M } from "./llama-200m.js";
import { MarkdownReport } from "./markdown-report.js";
import { DEFAULT_ENGINE_OPTIONS } from "../src/engine/engine-options.js";

const options = new Command("per-sequence-overhead")
  .option("--quick", "the same (the figures are computed, not timed)", false)
  .option("--out <file>", "also write the report (Markdown) to this file")
  .parse()
  .opts();

interface Shape {
  name: string;
  layers: number;
  heads: number;
  kvHeads: number;
  headSize: number;
}

const bench = llama200M();
const SHAPES: Shape[] = [
  { name: "stories260K", layers: 5, heads: 8, kvHeads: 4, headSize: 8 },
  { name: "~200M bench Llama", layers: bench.layers, heads: bench.heads, kvHeads: bench.kvHeads, headSize: bench.hidden / bench.heads },
  { name: "Llama-3-8B shape", layers: 32, heads: 32, kvHeads: 8, headSize: 128 },
];
const UNNAMED = DEFAULT_ENGINE_OPTIONS.recentQueryRows;
/** What each named policy keeps, at its default parameters. */
const NAMED = ["snapkv", "tova", "streaming_llm", "knorm", "h2o"].map((name) => ({ name, rows: POLICIES.get(name)!.queryRowsNeeded({}) }));
const PROMPT = 2048;
const KEEP = 0.2;

const DTYPES: KvDtype[] = ["float32", "float16"];

/** Bytes the pool holds for a ring sized as the engine sizes it for `rows`, in `kvDtype`. */
function ringBytes(shape: Shape, rows: number, kvDtype: KvDtype): number {
  const pool = new SlabPool(2 ** 40);
  const ring = new RecentQueryRing(pool, shape, UNNAMED, kvDtype);
  ring.resize(rows);
  ring.reserve();
  return pool.used;
}

const kb = (bytes: number) => (bytes >= 2 ** 20 ? `${(bytes / 2 ** 20).toFixed(1)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`);
const report = new MarkdownReport();
report.print("# Per-sequence overhead: the recent-query ring");
report.print();
report.print(`Bytes the pool holds for one sequence's ring, in the KV dtype (--kv-dtype), by the policy named for it; before any, the server's --recent-queries (${UNNAMED}).`);
report.print(`Share: of the K/V a ${PROMPT}-token prompt keeps at ${KEEP * 100}% in the same KV dtype, what the ring adds.`);
report.print();
report.print(`| model | KV dtype | K/V per token | no policy named (${UNNAMED} rows) | ${NAMED.map((p) => `${p.name} (${p.rows})`).join(" | ")} | share, unnamed → snapkv |`);
report.print(`|---|---|---|---|${NAMED.map(() => "---").join("|")}|---|`);
for (const shape of SHAPES) {
  for (const kvDtype of DTYPES) {
    const perToken = shape.layers * shape.kvHeads * floatsPerEntry({ kvHeads: shape.kvHeads, headSize: shape.headSize, kvDtype }) * 4;
    const kept = perToken * Math.floor(PROMPT * KEEP);
    const unnamed = ringBytes(shape, UNNAMED, kvDtype);
    const named = NAMED.map((p) => ringBytes(shape, p.rows, kvDtype));
    const snap = named[0];
    report.print(
      `| ${shape.name} | ${kvDtype} | ${kb(perToken)} | ${kb(unnamed)} | ${named.map(kb).join(" | ")} | ${((100 * unnamed) / kept).toFixed(0)}% → ${((100 * snap) / kept).toFixed(0)}% |`,
    );
  }
}
if (options.out) report.write(options.out);
