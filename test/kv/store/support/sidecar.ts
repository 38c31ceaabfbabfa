import { KvwardenClient } from "../../../../src/client/index.js";
import { spawnServe, type ServeProcess } from "../../../support/serve-process.js";

/** A `kvwarden serve` process of its own, and clients of it (test/kv/store tests with replicas). */
export interface Sidecar {
  serve: ServeProcess;
  port: number;
  /** A client of the sidecar, authenticated with `token` when given. */
  client(token?: string): KvwardenClient;
  /** The JSON log line whose msg is `msg`, parsed; undefined until logged. */
  logged(msg: string): Record<string, unknown> | undefined;
  /** SIGKILL, unless it has exited. */
  kill(): void;
}

/** Starts `kvwarden serve ARGS` on a free loopback port and waits until it serves. */
export async function startSidecar(args: readonly string[]): Promise<Sidecar> {
  const serve = spawnServe(["--listen", "127.0.0.1:0", ...args]);
  const logged = (msg: string) => {
    const line = serve.stderr.split("\n").find((l) => l.includes(`"msg":"${msg}"`));
    return line === undefined ? undefined : (JSON.parse(line) as Record<string, unknown>);
  };
  while (!logged("serving")) {
    if (serve.child.exitCode !== null) throw new Error(`kvwarden serve exited before serving: ${serve.stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const port = logged("serving")!.port as number;
  const clients: KvwardenClient[] = [];
  return {
    serve,
    port,
    client(token) {
      const client = new KvwardenClient(`127.0.0.1:${port}`, { token });
      clients.push(client);
      return client;
    },
    logged,
    kill() {
      for (const client of clients) client.close();
      if (serve.child.exitCode === null && serve.child.signalCode === null) serve.child.kill("SIGKILL");
    },
  };
}
