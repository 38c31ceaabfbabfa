import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:net";

/** Debian's redis-server, or valkey-server (bookworm-backports), which speaks the same protocol. */
export type RedisServerBinary = "redis-server" | "valkey-server";

/** A real redis-server or valkey-server on a loopback port of its own, for one test file. */
export interface RedisProcess {
  port: number;
  url: string;
  /** Stops the server (SIGTERM) and waits for it to exit. */
  stop(): Promise<void>;
  /** Runs a redis-cli command against it; resolves with its output. */
  cli(...args: string[]): Promise<string>;
}

/** A port free right now: redis-server cannot be told to pick one (`--port 0` turns TCP off). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, "close");
  return port;
}

export async function run(command: string, args: string[]): Promise<string> {
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (data: Buffer) => (output += data.toString()));
  child.stderr.on("data", (data: Buffer) => (output += data.toString()));
  // 'close', not 'exit': at 'exit' the output may not all have been read yet (under load a KEYS listing came back empty).
  const [code] = (await once(child, "close")) as [number];
  if (code !== 0) throw new Error(`${command} ${args.join(" ")} exited with ${code}: ${output}`);
  return output;
}

async function waitForReady(child: ChildProcess): Promise<void> {
  let output = "";
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", (data: Buffer) => {
      output += data.toString();
      if (output.includes("Ready to accept connections")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`the server exited with ${code} before it was ready: ${output}`)));
  });
}

/** PEM files for a TLS-only server: its certificate and key, and the CA that signed them. */
export interface RedisTls {
  cert: string;
  key: string;
  ca: string;
}

/**
 * Starts redis-server with no persistence on a free loopback port; `extra` adds settings (e.g.
 * --maxmemory). With `tls`, the port speaks TLS only (rediss://) and clients need no certificate.
 */
export async function startRedis(extra: string[] = [], tls?: RedisTls, server: RedisServerBinary = "redis-server"): Promise<RedisProcess> {
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const listen = tls
      ? ["--port", "0", "--tls-port", String(port), "--tls-cert-file", tls.cert, "--tls-key-file", tls.key, "--tls-ca-cert-file", tls.ca, "--tls-auth-clients", "no"]
      : ["--port", String(port)];
    const child = spawn(server, [...listen, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", ...extra], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    try {
      await waitForReady(child);
    } catch (error) {
      if (attempt < 3) continue; // another process took the port between our check and redis binding it
      throw error;
    }
    const exited = once(child, "exit");
    return {
      port,
      url: `${tls ? "rediss" : "redis"}://127.0.0.1:${port}`,
      async stop() {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill("SIGTERM");
          await exited;
        }
      },
      cli: (...args) => run("redis-cli", ["-p", String(port), ...(tls ? ["--tls", "--cacert", tls.ca] : []), ...args]),
    };
  }
}
