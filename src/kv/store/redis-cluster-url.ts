/**
 * A Redis Cluster store URL (docs/kv-store.md, "Redis Cluster"):
 * `redis+cluster://[user:password@]host:port[,host:port...]`, or `rediss+cluster://...` for TLS.
 * The nodes listed are where the client discovers the cluster from; it finds the others itself.
 * The WHATWG URL parser refuses a comma-separated host list, so it is parsed here.
 */
export interface RedisClusterUrl {
  tls: boolean;
  username?: string;
  password?: string;
  nodes: { host: string; port: number }[];
  /** The URL without credentials, for messages and logs. */
  location: string;
}

const CLUSTER_URL = /^(rediss?)\+cluster:\/\/(?:([^@/]*)@)?([^/?#@]+)\/?$/;

export function isClusterUrl(url: string): boolean {
  return /^rediss?\+cluster:/.test(url);
}

export function parseClusterUrl(url: string): RedisClusterUrl {
  const match = CLUSTER_URL.exec(url);
  if (!match) throw new Error(`--kv-store cluster URL is malformed: use redis+cluster://[user:password@]host:port[,host:port...] (a cluster has only database 0)`);
  const [, scheme, credentials, hostList] = match;
  const nodes = hostList.split(",").map((node) => {
    const at = node.lastIndexOf(":");
    const host = node.slice(0, at).replace(/^\[(.*)\]$/, "$1");
    const port = Number(node.slice(at + 1));
    if (at <= 0 || !Number.isInteger(port) || port < 1 || port > 65_535) throw new Error(`--kv-store cluster node '${node}' is not host:port`);
    return { host, port };
  });
  const [user, password] = credentials === undefined ? [] : splitCredentials(credentials);
  return { tls: scheme === "rediss", username: user || undefined, password, nodes, location: `${scheme}+cluster://${hostList}` };
}

function splitCredentials(credentials: string): [string, string | undefined] {
  const colon = credentials.indexOf(":");
  if (colon < 0) return [decodeURIComponent(credentials), undefined];
  return [decodeURIComponent(credentials.slice(0, colon)), decodeURIComponent(credentials.slice(colon + 1))];
}
