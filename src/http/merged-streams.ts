type Pulled<T> = { index: number; result?: IteratorResult<T>; error?: unknown };

/**
 * Yields the items of several streams as each arrives (the n choices of one
 * request decode side by side). The first failure ends the whole; every
 * stream is closed when the merge ends, early or not.
 */
export async function* mergedStreams<T>(streams: readonly AsyncGenerator<T>[]): AsyncGenerator<T> {
  const pending = new Map<number, Promise<Pulled<T>>>();
  const pull = (index: number) =>
    pending.set(
      index,
      streams[index].next().then(
        (result) => ({ index, result }),
        (error: unknown) => ({ index, error }),
      ),
    );
  streams.forEach((_, index) => pull(index));
  try {
    while (pending.size > 0) {
      const { index, result, error } = await Promise.race(pending.values());
      if (error !== undefined) throw error;
      if (result!.done) pending.delete(index);
      else {
        pull(index);
        yield result!.value;
      }
    }
  } finally {
    // A stream still pulling finishes its step first; each one's own cleanup then runs.
    await Promise.allSettled([...pending.values()]);
    await Promise.allSettled(streams.map((stream) => stream.return(undefined)));
  }
}
