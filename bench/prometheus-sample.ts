/** Reads one unlabelled sample, e.g. `nodejs_eventloop_lag_max_seconds`, from a Prometheus /metrics endpoint at host:port. */
export async function scrapeSample(address: string, name: string): Promise<number | undefined> {
  const text = await (await fetch(`http://${address}/metrics`)).text();
  const line = text.split("\n").find((candidate) => candidate.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}
