import { Command, InvalidArgumentError } from "commander";
import { readFileSync } from "node:fs";
import { runEval, SUITES, type Suite } from "../eval/run-eval.js";
import { modelSource } from "../model/load-model.js";
import { packagePath } from "../package/package-root.js";
import { positiveInt } from "./whole-number-options.js";

const RECALL_DIR = packagePath("models", "recall");

function list(value: string): string[] {
  return value.split(",").map((item) => item.trim()).filter((item) => item !== "");
}

function suites(value: string): Suite[] {
  const names = list(value);
  const unknown = names.filter((name) => !SUITES.includes(name as Suite));
  if (unknown.length > 0) throw new InvalidArgumentError(`unknown suites ${unknown.join(", ")} (available: ${SUITES.join(", ")})`);
  return names as Suite[];
}

function fractions(value: string): number[] {
  const values = list(value).map(Number);
  if (values.length === 0 || values.some((f) => !(f > 0 && f <= 1))) throw new InvalidArgumentError("must be keep fractions in (0, 1], comma-separated");
  return values;
}

/** `kvwarden eval`: measures what each policy costs in quality and writes the report. */
export function evalCommand(version: string): Command {
  return new Command("eval")
    .description("measure each eviction policy's quality cost (fidelity on a language model, recall on the recall model) and write a report")
    .option("--out <dir>", "folder the report (report.md, report.json, SVG charts) is written to", "eval-report")
    .option("--quick", "a small run: 3 stories, budgets 0.2 and 0.5, one recall task per kind (shortest length, middle depth)", false)
    .option("--target <address>", "host:port of a running sidecar for the fidelity suite (default: start one here)")
    .option("--model <path>", "the fidelity suite's model when starting a sidecar here, as serve --model takes it: a model folder (Hugging Face checkpoint, or what kvwarden convert wrote), or a llama2.c checkpoint with --tokenizer (default: stories260K)")
    .option("--tokenizer <path>", "llama2.c tokenizer (required with a llama2.c --model)")
    .option("--recall-model <dir>", "folder with the recall model's recall.bin, tok.bin and heldout.jsonl", RECALL_DIR)
    .option("--recall-target <address>", "host:port of a running sidecar serving the recall model (default: start one here)")
    .option("--token-file <file>", "file holding a bearer token for sidecars started with --auth-tokens (a file keeps it out of the report's command line)")
    .option("--suites <list>", `suites to run: ${SUITES.join(",")} (default: both; with --ablations, recall)`, suites)
    .option("--ablations", "the ablation variants of NACL and knorm (issue 14), budgets 0.2 and 0.5, on the recall suite unless --suites says otherwise; writes ablations.md and ablations.json", false)
    .option("--policies <list>", "policy labels or names to run (default: all but none; adakv runs as ada-snapkv and ada-pyramidkv; none alone: the full cache only)", list)
    .option("--budgets <list>", "keep_fraction values (default 0.1,0.2,0.35,0.5)", fractions)
    .option("--prompts <n>", "fidelity stories (default 32)", positiveInt)
    .option("--recall-per-group <n>", "recall tasks per task kind, prompt length and needle depth (default 2)", positiveInt)
    .option("--seed <n>", "first seed for sampling the stories", positiveInt, 1)
    .option("--concurrency <n>", "requests in flight at once", positiveInt, 2)
    .option("--threads <n>", "onnxruntime intra-op threads of a sidecar started here", positiveInt, 1)
    .action(async (options) => {
      const model = options.target ? undefined : modelSource(options.model, options.tokenizer);
      const token = options.tokenFile ? readFileSync(options.tokenFile, "utf8").trim() : undefined;
      // The chart (vega, vega-lite) and progress bar (cli-progress) libraries load only when an eval
      // runs, never with `kvwarden serve`, which imports this command to list it.
      const [{ terminalProgress }, { writeReport }, { writeAblationReport }] = await Promise.all([
        import("../eval/progress.js"),
        import("../eval/report.js"),
        import("../eval/ablation-report.js"),
      ]);
      const report = await runEval({
        suites: options.suites ?? (options.ablations ? ["recall"] : [...SUITES]),
        ablations: options.ablations,
        quick: options.quick,
        fidelitySidecar: options.target
          ? { target: options.target, token }
          : { model, threads: options.threads },
        recallDir: options.recallModel,
        recallTarget: options.recallTarget,
        token,
        policies: options.policies,
        budgets: options.budgets,
        prompts: options.prompts,
        recallPerGroup: options.recallPerGroup,
        seed: options.seed,
        concurrency: options.concurrency,
        command: ["kvwarden", ...process.argv.slice(2)].join(" "),
        version,
        progress: terminalProgress(),
      });
      const written = options.ablations ? writeAblationReport(report, options.out) : await writeReport(report, options.out);
      for (const path of written) process.stdout.write(`${path}\n`);
      if (report.recall && "skipped" in report.recall) process.stderr.write(`recall suite skipped: ${report.recall.skipped}\n`);
    });
}
