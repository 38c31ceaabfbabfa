import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { MODEL_FILES } from "../support/test-model.js";

const root = fileURLToPath(new URL("../../", import.meta.url));

/** Runs `kvwarden serve` on `model` until it exits; its exit code and JSON log lines. */
function serve(model: string): Promise<{ code: number | null; lines: Record<string, unknown>[] }> {
  const child = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", "serve", "--listen", "127.0.0.1:0", "--model", model, "--tokenizer", MODEL_FILES.tokenizerPath], {
    cwd: root,
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, OTEL_TRACES_EXPORTER: "none" },
  });
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  return new Promise((resolve) =>
    // 'close': the whole of stderr has been read by then (not always at 'exit').
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, lines: stderr.split("\n").filter((line) => line.startsWith("{")).map((line) => JSON.parse(line)) });
    }),
  );
}

describe("the model file missing or corrupt at start", () => {
  const folder = mkdtempSync(join(tmpdir(), "kvwarden-model-"));
  afterAll(() => rmSync(folder, { recursive: true, force: true }));

  it("exits non-zero with an error naming the file and what is wrong, never reporting serving", async () => {
    const truncated = join(folder, "truncated.bin");
    writeFileSync(truncated, readFileSync(MODEL_FILES.modelPath).subarray(0, 3_000));
    const garbage = join(folder, "garbage.bin");
    writeFileSync(garbage, Buffer.from(Array.from({ length: 4_000 }, (_, i) => (i * 7919) % 256)));
    const missing = join(folder, "missing.bin");

    const runs = await Promise.all([missing, truncated, garbage].map(serve));
    const expectations = [/no such file or directory/, /truncated checkpoint/, /not a llama2.c checkpoint/];
    runs.forEach(({ code, lines }, i) => {
      expect(code).not.toBe(0);
      expect(lines.some((line) => line.msg === "serving")).toBe(false);
      const error = lines.find((line) => line.level === "error");
      expect(error?.msg).toMatch(expectations[i]);
      expect(error?.msg).toContain([missing, truncated, garbage][i]);
    });
  });
});
