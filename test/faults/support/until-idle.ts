import type { KvwardenClient } from "../../../src/client/index.js";

/**
 * Waits until the server has finished with a sequence (or dropped it): a
 * client that cancelled or timed out hears back before the server's side of
 * the call has wound down. Stats reports idle_ms 0 while a call holds it.
 */
export async function untilIdle(client: KvwardenClient, sequenceId: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { sequences } = await client.stats();
    const sequence = sequences.find((s) => s.sequenceId === sequenceId);
    if (!sequence || sequence.idleMs > 0n) return;
    if (Date.now() > deadline) throw new Error(`sequence '${sequenceId}' still busy after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
