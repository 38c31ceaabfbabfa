import { credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import {
  DecodeRequest,
  EvictRequest,
  InfoRequest,
  KvCacheClient,
  PrefillRequest,
  ReleaseRequest,
  StatsRequest,
  type DecodeResponse,
  type EvictResponse,
  type InfoResponse,
  type PrefillResponse,
  type ReleaseResponse,
  type StatsResponse,
} from "../gen/kvwarden/v1/kvwarden.js";

/** A request with only the fields the caller sets. */
export type DeepPartial<T> = T extends bigint | number | string | boolean | undefined
  ? T
  : T extends Array<infer U>
    ? DeepPartial<U>[]
    : { [K in keyof T]?: DeepPartial<T[K]> };

/** The KvCache service as promises, over one channel; unset request fields take their proto defaults. */
export class EvalClient {
  private readonly client: KvCacheClient;

  /** `token`: sent as `authorization: Bearer TOKEN`, for sidecars started with --auth-tokens. */
  constructor(
    readonly target: string,
    private readonly token?: string,
  ) {
    this.client = new KvCacheClient(target, credentials.createInsecure(), { "grpc.max_receive_message_length": 64 * 1024 * 1024 });
  }

  prefill(request: DeepPartial<PrefillRequest>): Promise<PrefillResponse> {
    return this.unary<PrefillResponse>((callback) => this.client.prefill(PrefillRequest.fromPartial(request), this.metadata(), callback));
  }

  evict(request: DeepPartial<EvictRequest>): Promise<EvictResponse> {
    return this.unary<EvictResponse>((callback) => this.client.evict(EvictRequest.fromPartial(request), this.metadata(), callback));
  }

  stats(request: DeepPartial<StatsRequest>): Promise<StatsResponse> {
    return this.unary<StatsResponse>((callback) => this.client.stats(StatsRequest.fromPartial(request), this.metadata(), callback));
  }

  release(sequenceId: string): Promise<ReleaseResponse> {
    return this.unary<ReleaseResponse>((callback) => this.client.release(ReleaseRequest.fromPartial({ sequenceId }), this.metadata(), callback));
  }

  info(): Promise<InfoResponse> {
    return this.unary<InfoResponse>((callback) => this.client.info(InfoRequest.fromPartial({}), this.metadata(), callback));
  }

  /** The whole Decode stream's tokens. */
  async decode(request: DeepPartial<DecodeRequest> & { sequenceId: string; maxNewTokens: number }): Promise<DecodeResponse[]> {
    const messages: DecodeResponse[] = [];
    for await (const message of this.client.decode(DecodeRequest.fromPartial(request), this.metadata())) messages.push(message as DecodeResponse);
    return messages;
  }

  /** Waits until the channel is connected, or fails after `timeoutMs`. */
  ready(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => this.client.waitForReady(Date.now() + timeoutMs, (error) => (error ? reject(error) : resolve())));
  }

  close(): void {
    this.client.close();
  }

  private metadata(): Metadata {
    const metadata = new Metadata();
    if (this.token) metadata.set("authorization", `Bearer ${this.token}`);
    return metadata;
  }

  private unary<T>(start: (callback: (error: ServiceError | null, response: T) => void) => unknown): Promise<T> {
    return new Promise((resolve, reject) => start((error, response) => (error ? reject(error) : resolve(response))));
  }
}
