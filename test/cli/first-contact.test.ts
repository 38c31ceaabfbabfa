import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { llama2cAsHfConfig, llama2cAsHfTensors, llama2cTokenizerJson, writeHfCheckpoint, writeTokenizer } from "../model/hf-fixtures.js";
import { loadTestWeights, MODEL_FILES } from "../support/test-model.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** `kvwarden ARGS` run from the sources until it exits, with tracing off (and `env` added). */
async function kvwarden(args: readonly string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, OTEL_TRACES_EXPORTER: "none", ...env },
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const timer = setTimeout(() => child.kill("SIGKILL"), 50_000);
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** Each option's help entry, its wrapped lines joined: flags, description and default on one line. */
function helpEntries(help: string): Map<string, string> {
  const entries = new Map<string, string>();
  let flags = "";
  for (const line of help.split("\n")) {
    const start = /^ {2}(-\S+(?: <\w+>)?)\s+(.*)$/.exec(line);
    if (start) entries.set((flags = start[1]), start[2]);
    else if (flags && /^ {20,}\S/.test(line)) entries.set(flags, `${entries.get(flags)} ${line.trim()}`);
  }
  return entries;
}

describe("kvwarden's help", () => {
  it("shows serve's size and mode defaults as sizes and octal", async () => {
    const { code, stdout } = await kvwarden(["serve", "--help"]);
    expect(code).toBe(0);
    expect(stdout).toContain("  --kv-budget <size>             KV memory all sequences may hold (default:\n                                 512MiB)\n");
    expect(stdout).toContain("  --socket-mode <octal>          file mode of a unix: listener's socket\n                                 (default: 0660)\n");
    const entries = helpEntries(stdout);
    expect(entries.get("--max-prompt-bytes <size>")).toBe("UTF-8 bytes of text (or chat messages) one Prefill may send, and token ids it may give (default: 1MiB)");
  });

  it("shows no size or mode default as a bare number in any subcommand", async () => {
    for (const command of ["serve", "eval", "convert"]) {
      const { stdout } = await kvwarden([command, "--help"]);
      for (const [flags, entry] of helpEntries(stdout)) {
        if (/<size>/.test(flags)) expect(entry, `${command} ${flags}`).not.toMatch(/default: \d+\)/);
        if (/<octal>/.test(flags)) expect(entry, `${command} ${flags}`).not.toMatch(/default: [1-9]\d*\)/);
      }
    }
  });

  it("says where the default model is looked for and where to get it, and that nothing is downloaded", async () => {
    const { stdout } = await kvwarden(["serve", "--help"]);
    expect(helpEntries(stdout).get("--model <path>")).toBe(
      "a model folder (Hugging Face checkpoint, or what kvwarden convert wrote), or a llama2.c checkpoint with --tokenizer " +
        "(default: stories260K, stories260K.bin and tok512.bin from ../shared/models beside the checkout or from kvwarden/stories260K " +
        "in the user cache ($XDG_CACHE_HOME or ~/.cache), sha256-checked; nothing is downloaded: get both from the karpathy/tinyllamas " +
        "repository on Hugging Face, folder stories260K)",
    );
  });
});

/** The one error line a failed start writes to stderr: exactly one line, a JSON log record. */
function oneErrorLine(stderr: string): string {
  const lines = stderr.split("\n").filter((line) => line !== "");
  expect(lines, stderr).toHaveLength(1);
  const record = JSON.parse(lines[0]);
  expect(record.level).toBe("error");
  return record.msg;
}

describe("kvwarden's start-up and argument errors", () => {
  it("names a missing --model path in one line", async () => {
    const { code, stderr } = await kvwarden(["serve", "--model", "/nonexistent/model-folder"]);
    expect(code).toBe(1);
    expect(oneErrorLine(stderr)).toBe("--model /nonexistent/model-folder: no such file or directory");
  });

  it("names a missing --tokenizer path in one line", async () => {
    const { code, stderr } = await kvwarden(["serve", "--model", MODEL_FILES.modelPath, "--tokenizer", "/nonexistent/tok.bin"]);
    expect(code).toBe(1);
    expect(oneErrorLine(stderr)).toBe("--tokenizer /nonexistent/tok.bin: no such file or directory");
  });

  it("names the address in use in one line, without grpc-js's own line", async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const { port } = blocker.address() as AddressInfo;
    try {
      const grpc = await kvwarden(["serve", "--listen", `127.0.0.1:${port}`, "--model", MODEL_FILES.modelPath, "--tokenizer", MODEL_FILES.tokenizerPath]);
      expect(grpc.code).toBe(1);
      expect(oneErrorLine(grpc.stderr)).toBe(`cannot listen on 127.0.0.1:${port}: address already in use`);
      const metrics = await kvwarden(["serve", "--listen", "127.0.0.1:0", "--metrics-listen", `127.0.0.1:${port}`]);
      expect(metrics.code).toBe(1);
      expect(oneErrorLine(metrics.stderr)).toBe(`cannot listen on 127.0.0.1:${port}: address already in use`);
    } finally {
      blocker.close();
    }
  });

  it("reports commander's argument errors as the same one JSON line", async () => {
    const cases: [string[], string][] = [
      [["serve", "--bogus"], "unknown option '--bogus'"],
      [["serve", "--kv-budget", "12xx"], "option '--kv-budget <size>' argument '12xx' is invalid. '12xx' is not a size (examples: 512MiB, 2GB, 1048576)"],
      [["servee"], "unknown command 'servee' (Did you mean serve?)"],
      [["eval", "--prompts", "0"], "option '--prompts <n>' argument '0' is invalid. must be a positive integer"],
      [["convert", "--hf", "x"], "required option '--out <dir>' not specified"],
    ];
    for (const [args, message] of cases) {
      const { code, stderr } = await kvwarden(args);
      expect(code, args.join(" ")).toBe(1);
      expect(oneErrorLine(stderr)).toBe(message);
    }
  });
});

describe("kvwarden eval --model", () => {
  const root = mkdtempSync(join(tmpdir(), "kvwarden-eval-hf-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it("takes a Hugging Face folder, as serve --model does", async () => {
    const hfDir = join(root, "stories-hf");
    const weights = loadTestWeights();
    writeHfCheckpoint(hfDir, llama2cAsHfConfig(weights.config), llama2cAsHfTensors(weights), { dtype: "F32", shards: 1 });
    writeTokenizer(hfDir, llama2cTokenizerJson(MODEL_FILES.tokenizerPath, weights.config.vocabSize), { bos_token: "<s>", eos_token: "</s>" }, { bos_token_id: 1, eos_token_id: 2 });
    const out = join(root, "report");
    const args = ["eval", "--model", hfDir, "--suites", "fidelity", "--quick", "--prompts", "1", "--budgets", "0.5", "--policies", "none", "--out", out];
    const { code, stdout, stderr } = await kvwarden(args, { XDG_CACHE_HOME: join(root, "cache") });
    expect(code, stderr).toBe(0);
    expect(stdout).toContain(join(out, "report.json"));
    const report = JSON.parse(readFileSync(join(out, "report.json"), "utf8"));
    expect(report.fidelity.model).toEqual({ name: "stories-hf", layers: 5, heads: 8, kvHeads: 4, contextLength: 512, vocabSize: 512 });
    expect(report.fidelity.full.perplexity).toBeGreaterThan(1);
    // Converted once into the user cache, as serve converts a Hugging Face folder.
    expect(readdirSync(join(root, "cache", "kvwarden", "converted"))).toEqual([expect.stringMatching(/^stories-hf-[0-9a-f]{16}$/)]);
    expect(existsSync(join(out, "report.md"))).toBe(true);
  });

  it("names a missing --model path in one line", async () => {
    const { code, stderr } = await kvwarden(["eval", "--model", "/nonexistent/model-folder", "--out", join(root, "unused")]);
    expect(code).toBe(1);
    expect(oneErrorLine(stderr)).toBe("--model /nonexistent/model-folder: no such file or directory");
  });
});
