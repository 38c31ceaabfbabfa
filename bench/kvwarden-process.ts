/**
 * `kvwarden serve` as a child process on loopback, as a backend's sidecar
 * would run, with a bearer token per tenant. Used by the load and soak benches.
 */
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../src/package/package-root.js";

export interface KvwardenProcess {
  pid: number;
  /** host:port of the gRPC service. */
  address: string;
  /** host:port of /metrics, when the flags include --metrics-listen. */
  metricsAddress?: string;
  /** Whether it has exited (on its own, or after stop). */
  exited(): boolean;
  /** SIGTERM; resolves with the exit code. */
  stop(): Promise<number | null>;
}

/** The bearer token the bench gives a tenant. */
export function tenantToken(tenant: string): string {
  return `bench-${tenant}-token-0123456789`;
}

/** Starts `kvwarden serve` with `flags` and a token per tenant (files in `folder`); resolves once it serves. */
export async function startKvwarden(folder: string, tenants: string[], flags: string[]): Promise<KvwardenProcess> {
  const tokens = join(folder, "tokens");
  writeFileSync(tokens, tenants.map((tenant) => `${tenantToken(tenant)} ${tenant}`).join("\n"));
  // Under tsx the bench runs from source, and so does the server it starts.
  const fromSource = import.meta.url.endsWith(".ts");
  const entry = fromSource ? ["--import", "tsx", "src/cli/main.ts"] : ["dist/src/cli/main.js"];
  const args = [...entry, "serve", "--listen", "127.0.0.1:0", "--auth-tokens", tokens, ...flags];
  const child = spawn(process.execPath, args, { cwd: PACKAGE_ROOT, stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, OTEL_TRACES_EXPORTER: "none" } });
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
  for (;;) {
    const serving = stderr.split("\n").find((line) => line.includes('"msg":"serving"'));
    if (serving) {
      const { port, metricsPort } = JSON.parse(serving) as { port: number; metricsPort?: number };
      return {
        pid: child.pid!,
        address: `127.0.0.1:${port}`,
        metricsAddress: metricsPort === undefined ? undefined : `127.0.0.1:${metricsPort}`,
        exited: () => child.exitCode !== null || child.signalCode !== null,
        stop: () => (child.kill("SIGTERM"), exited),
      };
    }
    if (child.exitCode !== null) throw new Error(`the server did not start:\n${stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
