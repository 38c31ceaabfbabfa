/**
 * Calls the client has cancelled that are still winding down (a decode step
 * already running finishes first). Stats and Truncate wait for them, so they
 * see what the cancelled call left, not a sequence about to change.
 */
export class CancelledCalls<K> {
  private readonly winding = new Map<K, Promise<void>>();

  /** Watches a call on `key` until the returned function is called, when it has ended. */
  track(key: K, signal: AbortSignal | undefined): () => void {
    let ended: (() => void) | undefined;
    const onAbort = () => this.winding.set(key, new Promise((resolve) => (ended = resolve)));
    if (signal?.aborted) onAbort();
    else signal?.addEventListener("abort", onAbort, { once: true });
    return () => {
      signal?.removeEventListener("abort", onAbort);
      if (!ended) return;
      this.winding.delete(key);
      ended();
    };
  }

  /** Resolves once no cancelled call on any of `keys` is still running. */
  async settled(keys: Iterable<K>): Promise<void> {
    await Promise.all([...keys].map((key) => this.winding.get(key)));
  }
}
