import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

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
