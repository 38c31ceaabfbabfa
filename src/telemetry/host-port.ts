/** Splits HOST:PORT (or [IPv6]:PORT, or :PORT for every interface). */
export function parseHostPort(address: string): { host: string | undefined; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(address);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) throw new Error(`'${address}' is not HOST:PORT`);
  const host = match[1] ?? match[2];
  return { host: host === "" ? undefined : host, port };
}
