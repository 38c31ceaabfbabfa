/**
 * Latency (an HDR histogram) and status counts per kind of call, for the
 * benches that drive a live server over gRPC. Keeps the first few statuses
 * the bench did not expect, with their details, for its verdict.
 */
import { Metadata, status, type ClientReadableStream, type ServiceError } from "@grpc/grpc-js";
import * as hdr from "hdr-histogram-js";

const KEPT_UNEXPECTED = 20;

export class RpcTally<Kind extends string> {
  private readonly latencies: Map<Kind, hdr.Histogram>;
  private readonly statuses = new Map<Kind, Map<status, number>>();
  /** `kind code: details` of the first unexpected statuses. */
  readonly unexpected: string[] = [];

  constructor(
    private readonly kinds: readonly Kind[],
    private readonly expected: (code: status) => boolean,
  ) {
    // Microseconds, up to ten minutes.
    this.latencies = new Map(kinds.map((kind) => [kind, hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 3 })]));
  }

  /** Records a call that began at `started` (performance.now()) and ended now with `code`. */
  record(kind: Kind, started: number, code: status, details = ""): void {
    this.latencies.get(kind)!.recordValue(Math.max(1, Math.round((performance.now() - started) * 1000)));
    const counts = this.statuses.get(kind) ?? this.statuses.set(kind, new Map()).get(kind)!;
    counts.set(code, (counts.get(code) ?? 0) + 1);
    if (!this.expected(code) && this.unexpected.length < KEPT_UNEXPECTED) this.unexpected.push(`${kind} ${status[code]}: ${details}`);
  }

  /** Runs a unary call, recording it; resolves with its status, and its reply when it succeeded. */
  unary<Res>(kind: Kind, invoke: (metadata: Metadata, callback: (error: ServiceError | null, response: Res) => void) => unknown): Promise<{ reply?: Res; code: status }> {
    const started = performance.now();
    return new Promise((resolve) =>
      invoke(new Metadata(), (error, response) => {
        const code = error?.code ?? status.OK;
        this.record(kind, started, code, error?.details ?? "");
        resolve(error ? { code } : { reply: response, code });
      }),
    );
  }

  /**
   * Opens a server stream and drains it, recording it; `each` sees every message
   * with how many came so far (and may cancel the call). Resolves with how many came and the status.
   */
  async stream<Res>(kind: Kind, open: () => ClientReadableStream<Res>, each?: (message: Res, received: number, call: ClientReadableStream<Res>) => void): Promise<{ received: number; code: status }> {
    const started = performance.now();
    const call = open();
    let received = 0;
    try {
      for await (const message of call) {
        received++;
        each?.(message as Res, received, call);
      }
    } catch (error) {
      const { code, details } = error as ServiceError;
      this.record(kind, started, code, details);
      return { received, code };
    }
    this.record(kind, started, status.OK);
    return { received, code: status.OK };
  }

  /** Calls recorded, all kinds together. */
  get total(): number {
    return [...this.latencies.values()].reduce((sum, h) => sum + h.totalCount, 0);
  }

  /** A Markdown table: per kind, calls, rate over `seconds`, p50/p99/max latency and the status mix. */
  table(seconds: number): string[] {
    const ms = (us: number) => (us / 1000).toFixed(2);
    const rows = this.kinds.map((kind) => {
      const h = this.latencies.get(kind)!;
      const mix = [...(this.statuses.get(kind) ?? [])].sort(([, a], [, b]) => b - a).map(([code, n]) => `${status[code]} ${n}`);
      return `| ${kind} | ${h.totalCount} | ${(h.totalCount / seconds).toFixed(1)} | ${ms(h.getValueAtPercentile(50))} | ${ms(h.getValueAtPercentile(99))} | ${ms(h.maxValue)} | ${mix.join(", ")} |`;
    });
    return ["| call | calls | calls/s | p50 ms | p99 ms | max ms | statuses |", "| --- | ---: | ---: | ---: | ---: | ---: | --- |", ...rows];
  }
}
