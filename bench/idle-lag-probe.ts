/**
 * The soak's bystander: an idle Node process that measures its own event-loop stalls the way the
 * server's prom-client gauge does (`monitorEventLoopDelay` at 10 ms resolution, the longest since
 * the last report) and prints that figure, in seconds, once a second. Run beside the server, it
 * shows what the machine alone costs an event loop with no work: the floor under the server's figure.
 */
import { monitorEventLoopDelay } from "node:perf_hooks";

const delays = monitorEventLoopDelay({ resolution: 10 });
delays.enable();
setInterval(() => {
  process.stdout.write(`${delays.max / 1e9}\n`);
  delays.reset();
}, 1_000);
