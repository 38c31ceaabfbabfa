import type { ServerResponse } from "node:http";

/**
 * A response streamed as server-sent events the way OpenAI streams: each
 * event one `data: JSON` line and a blank line, and `data: [DONE]` at the end.
 */
export class ServerSentEvents {
  constructor(private readonly response: ServerResponse) {}

  open(): void {
    this.response.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      connection: "keep-alive",
      // Proxies such as nginx would otherwise buffer the stream.
      "x-accel-buffering": "no",
    });
  }

  send(data: unknown): void {
    this.response.write(`data: ${JSON.stringify(data)}\n\n`);
  }

  /** Ends the stream normally. */
  done(): void {
    this.response.end("data: [DONE]\n\n");
  }

  /** Ends the stream with an error event (OpenAI's error object): the status line has long been sent. */
  fail(error: unknown): void {
    if (!this.response.writableEnded) this.response.end(`data: ${JSON.stringify(error)}\n\n`);
  }

  /** Pending while the client's socket buffer is full (until it drains or the client leaves); undefined when it can take more. */
  backpressure(): Promise<void> | undefined {
    if (!this.response.writableNeedDrain || this.response.destroyed) return undefined;
    return new Promise((resolve) => {
      const done = () => {
        this.response.off("drain", done);
        this.response.off("close", done);
        resolve();
      };
      this.response.once("drain", done);
      this.response.once("close", done);
    });
  }
}
