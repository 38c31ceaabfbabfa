/** Splits HOST:PORT (or [IPv6]:PORT, or :PORT for every interface). */
export function parseHostPort(address: string): { host: string | undefined; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(address);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) throw new Error(`'${address}' is not HOST:PORT`);
  const host = match[1] ?? match[2];
  return { host: host === "" ? undefined : host, port };
}

/**
 * A failed bind as one line naming the address: Node's "listen EADDRINUSE: address already in use
 * 127.0.0.1:50051" (grpc-js wraps a list of those) becomes "cannot listen on 127.0.0.1:50051:
 * address already in use".
 */
export function listenError(address: string, error: Error): Error {
  const causes = /errors: \[(.*)\]$/.exec(error.message)?.[1].split(",") ?? [error.message];
  const reasons = causes.map((cause) => /^\w+ E[A-Z]+: (.*?)(?: \S*:\d+)?$/.exec(cause.trim())?.[1] ?? cause.trim());
  return new Error(`cannot listen on ${address}: ${[...new Set(reasons)].join("; ")}`);
}
