import { credentials, Metadata, type CallOptions, type ChannelCredentials, type ClientOptions, type ServiceError } from "@grpc/grpc-js";
import { context, propagation } from "@opentelemetry/api";
import {
  DecodeRequest,
  EvictRequest,
  ForkRequest,
  InfoRequest,
  KvCacheClient,
  PrefillRequest,
  ReleaseRequest,
  StatsRequest,
  TruncateRequest,
  OffloadRequest,
  type DecodeResponse,
  type DeepPartial,
  type EvictResponse,
  type ForkResponse,
  type InfoResponse,
  type PrefillResponse,
  type ReleaseResponse,
  type StatsResponse,
  type TruncateResponse,
  type OffloadResponse,
} from "../gen/kvwarden/v1/kvwarden.js";

export * from "../gen/kvwarden/v1/kvwarden.js";

export interface KvwardenClientOptions {
  /** Default: insecure (loopback or a pod-local Unix socket). */
  credentials?: ChannelCredentials;
  /** Sent as `authorization: Bearer TOKEN` on every call, for sidecars started with --auth-tokens. */
  token?: string;
  /** grpc-js channel options. */
  channelOptions?: ClientOptions;
}

export interface CallSettings {
  /** Milliseconds from now, or an absolute Date. */
  deadline?: number | Date;
  /** Aborting cancels the call (a Decode stops generating at once). */
  signal?: AbortSignal;
  /** Extra metadata; the active OpenTelemetry context is added as `traceparent` by itself. */
  metadata?: Metadata;
}

/** Settings of the calls whose request fields are positional (Release, Fork, Truncate, Offload). */
export interface RetryableCallSettings extends CallSettings {
  /** The request's `request_id`: a retry with the same id is answered as the first call was, not run again (docs/clients.md). */
  requestId?: string;
}

/**
 * KvCache for Node backends: promises for unary calls, an async iterator for
 * Decode (breaking out of the loop cancels the stream), deadlines, abort
 * signals, and trace context carried from the caller's active span.
 */
export class KvwardenClient {
  readonly raw: KvCacheClient;
  private readonly token?: string;

  /** `address`: host:port, or unix:/path for a pod-local socket. */
  constructor(address: string, options: KvwardenClientOptions = {}) {
    this.raw = new KvCacheClient(address, options.credentials ?? credentials.createInsecure(), options.channelOptions);
    this.token = options.token;
  }

  prefill(request: DeepPartial<PrefillRequest> & { sequenceId: string }, settings: CallSettings = {}): Promise<PrefillResponse> {
    return this.unary((m, o, cb) => this.raw.prefill(PrefillRequest.fromPartial(request), m, o, cb), settings);
  }

  /** Streams generated tokens; the last carries the finish reason. */
  async *decode(request: DeepPartial<DecodeRequest> & { sequenceId: string }, settings: CallSettings = {}): AsyncGenerator<DecodeResponse> {
    const call = this.raw.decode(DecodeRequest.fromPartial(request), this.metadataFor(settings), optionsFor(settings));
    const cancel = () => call.cancel();
    settings.signal?.addEventListener("abort", cancel);
    try {
      for await (const message of call) yield message as DecodeResponse;
    } finally {
      settings.signal?.removeEventListener("abort", cancel);
      call.cancel(); // no-op once the stream ended; stops it when the caller broke out early
    }
  }

  /** Decodes to the end and returns the text, the token ids and why generation stopped. */
  async generate(
    request: DeepPartial<DecodeRequest> & { sequenceId: string },
    settings: CallSettings = {},
  ): Promise<{ text: string; tokenIds: number[]; finishReason: DecodeResponse["finishReason"] }> {
    let text = "";
    const tokenIds: number[] = [];
    let finishReason: DecodeResponse["finishReason"] = 0;
    for await (const token of this.decode(request, settings)) {
      text += token.text;
      tokenIds.push(token.tokenId);
      finishReason = token.finishReason;
    }
    return { text, tokenIds, finishReason };
  }

  evict(request: DeepPartial<EvictRequest> & { sequenceId: string }, settings: CallSettings = {}): Promise<EvictResponse> {
    return this.unary((m, o, cb) => this.raw.evict(EvictRequest.fromPartial(request), m, o, cb), settings);
  }

  stats(request: DeepPartial<StatsRequest> = {}, settings: CallSettings = {}): Promise<StatsResponse> {
    return this.unary((m, o, cb) => this.raw.stats(StatsRequest.fromPartial(request), m, o, cb), settings);
  }

  release(sequenceId: string, settings: RetryableCallSettings = {}): Promise<ReleaseResponse> {
    return this.unary((m, o, cb) => this.raw.release(ReleaseRequest.fromPartial({ sequenceId, requestId: settings.requestId }), m, o, cb), settings);
  }

  /** Copies `sequenceId`, cache and all, as `newSequenceId`. */
  fork(sequenceId: string, newSequenceId: string, settings: RetryableCallSettings = {}): Promise<ForkResponse> {
    return this.unary((m, o, cb) => this.raw.fork(ForkRequest.fromPartial({ sequenceId, newSequenceId, requestId: settings.requestId }), m, o, cb), settings);
  }

  /** Rolls `sequenceId` back to its first `length` tokens (e.g. those a cancelled Decode delivered). */
  truncate(sequenceId: string, length: number, settings: RetryableCallSettings = {}): Promise<TruncateResponse> {
    return this.unary((m, o, cb) => this.raw.truncate(TruncateRequest.fromPartial({ sequenceId, length, requestId: settings.requestId }), m, o, cb), settings);
  }

  /** Moves the sequence to the server's KV store and frees its memory (docs/kv-store.md); a later call restores it. */
  offload(sequenceId: string, settings: RetryableCallSettings = {}): Promise<OffloadResponse> {
    return this.unary((m, o, cb) => this.raw.offload(OffloadRequest.fromPartial({ sequenceId, requestId: settings.requestId }), m, o, cb), settings);
  }

  info(settings: CallSettings = {}): Promise<InfoResponse> {
    return this.unary((m, o, cb) => this.raw.info(InfoRequest.fromPartial({}), m, o, cb), settings);
  }

  /** Resolves once the channel is connected (the sidecar may still be loading: check health for that). */
  waitForReady(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => this.raw.waitForReady(Date.now() + timeoutMs, (error) => (error ? reject(error) : resolve())));
  }

  close(): void {
    this.raw.close();
  }

  /** The caller's metadata, the token, and the active trace context, so the sidecar's spans join the backend's trace. */
  private metadataFor(settings: CallSettings): Metadata {
    const metadata = settings.metadata?.clone() ?? new Metadata();
    if (this.token) metadata.set("authorization", `Bearer ${this.token}`);
    propagation.inject(context.active(), metadata, { set: (carrier, key, value) => carrier.set(key, value) });
    return metadata;
  }

  private unary<Res>(
    start: (metadata: Metadata, options: CallOptions, callback: (error: ServiceError | null, response: Res) => void) => { cancel(): void },
    settings: CallSettings,
  ): Promise<Res> {
    return new Promise((resolve, reject) => {
      const call = start(this.metadataFor(settings), optionsFor(settings), (error, response) => {
        settings.signal?.removeEventListener("abort", cancel);
        if (error) reject(error);
        else resolve(response);
      });
      const cancel = () => call.cancel();
      if (settings.signal?.aborted) cancel();
      else settings.signal?.addEventListener("abort", cancel);
    });
  }
}

function optionsFor(settings: CallSettings): CallOptions {
  const { deadline } = settings;
  return deadline === undefined ? {} : { deadline: typeof deadline === "number" ? Date.now() + deadline : deadline };
}
