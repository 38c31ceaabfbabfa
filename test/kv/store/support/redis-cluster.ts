import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, run, startRedis, type RedisProcess } from "./redis-server.js";

/** A real Redis Cluster of primaries only (Debian's redis-server and redis-cli), on loopback ports of its own. */
export interface RedisCluster {
  nodes: RedisProcess[];
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Starts `primaries` redis-servers with --cluster-enabled, joins them with `redis-cli --cluster create`
 * (the slots split evenly) and waits until every node reports cluster_state:ok. The cluster bus port
 * is chosen free as well: the default (port + 10000) can be past 65535 for an ephemeral port.
 */
export async function startRedisCluster(primaries = 3): Promise<RedisCluster> {
  const folder = mkdtempSync(join(tmpdir(), "kvwarden-redis-cluster-"));
  const nodes: RedisProcess[] = [];
  const stop = async () => {
    await Promise.all(nodes.map((node) => node.stop()));
    rmSync(folder, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < primaries; i++) {
      const settings = ["--cluster-enabled", "yes", "--cluster-config-file", join(folder, `nodes-${i}.conf`), "--cluster-port", String(await freePort()), "--dir", folder];
      nodes.push(await startRedis(settings));
    }
    await run("redis-cli", ["--cluster", "create", ...nodes.map((node) => `127.0.0.1:${node.port}`), "--cluster-yes"]);
    for (let attempt = 0; ; attempt++) {
      const states = await Promise.all(nodes.map((node) => node.cli("CLUSTER", "INFO")));
      if (states.every((state) => state.includes("cluster_state:ok"))) break;
      if (attempt > 100) throw new Error(`the cluster did not become ready: ${states.join(" / ")}`);
      await sleep(100);
    }
    return { nodes, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
