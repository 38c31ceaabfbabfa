/** The part of a grpc-js server stream that flow control needs. */
export interface FlowStream<Res> {
  write(message: Res): boolean;
  once(event: "drain", listener: () => void): unknown;
  removeListener(event: "drain", listener: () => void): unknown;
}

/**
 * Backpressure of a server stream. grpc-js buffers every message written, so
 * a client that stops reading would otherwise let the server generate (and
 * hold KV for) its whole request; `write` returning false means the buffer is
 * full, and producers wait on `full` until it drains or the call ends.
 */
export class StreamFlow<Res> {
  private pending: Promise<void> | undefined;

  constructor(
    private readonly stream: FlowStream<Res>,
    private readonly signal: AbortSignal,
  ) {}

  write(message: Res): void {
    if (this.stream.write(message) || this.pending || this.signal.aborted) return;
    this.pending = new Promise<void>((resolve) => {
      const done = () => {
        this.stream.removeListener("drain", done);
        this.signal.removeEventListener("abort", done);
        this.pending = undefined;
        resolve();
      };
      this.stream.once("drain", done);
      this.signal.addEventListener("abort", done, { once: true });
    });
  }

  /** Undefined while the buffer has room; otherwise settles once it drains or the call is cancelled. */
  get full(): Promise<void> | undefined {
    return this.pending;
  }
}
