import { Server, ServerCredentials } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { join } from "node:path";
import { DEFAULT_MAX_SEQUENCE_TOKENS, Engine } from "../engine/engine.js";
import { KvCacheService } from "../gen/kvwarden/v1/kvwarden.js";
import { HttpFront } from "../http/http-front.js";
import { packagePath } from "../package/package-root.js";
import { listenError } from "../telemetry/host-port.js";
import type { LogSink } from "../telemetry/json-log.js";
import type { KvwardenMetrics } from "../telemetry/metrics.js";
import { authInterceptor, type Refusal } from "../server/middleware/auth-interceptor.js";
import type { Authenticator } from "../server/authenticator.js";
import { CallTracker } from "../server/call-tracker.js";
import { connectionOptions, DEFAULT_CONNECTION_LIMITS, type ConnectionLimits } from "../server/connection-limits.js";
import { Health, KV_CACHE_SERVICE } from "../server/health.js";
import { kvCacheService, type ServiceInfo } from "../server/kv-cache-service.js";
import { lenientDecoding } from "../server/malformed-request.js";
import { maxRequestBytes } from "../server/message-limit.js";
import { observeOverLimitMessages } from "../server/over-limit-messages.js";
import { keepRepeatedHeaders } from "../server/repeated-headers.js";
import { serverMiddleware } from "../server/middleware/server-middleware.js";
import { RpcRuntime } from "../server/rpc-runtime.js";
import { rpcSemconv } from "../server/rpc-semconv.js";
import { Unavailable } from "../server/status.js";
import { TenantMetrics } from "../server/tenant-metrics.js";
import { serverCredentials, type TlsCertificates, type TlsFiles } from "../server/tls.js";
import { bindPrivately, socketPath } from "../server/unix-socket.js";

const PROTO_ROOT = packagePath("proto");

export interface KvwardenServerOptions {
  /** Counts calls, tokens and refusals. */
  metrics?: KvwardenMetrics;
  /** Receives one line per finished call. */
  log?: LogSink;
  /** Log lines carry prompt and output text. */
  logContent?: boolean;
  /** Who may call, as which tenant; absent = everyone, as the anonymous tenant. */
  authenticator?: Authenticator;
  /** Larger request messages are refused unread (RESOURCE_EXHAUSTED); default: sized for the default --max-sequence-tokens (see message-limit.ts). */
  maxRequestBytes?: number;
  /** When idle or unresponsive connections are closed (default DEFAULT_CONNECTION_LIMITS). */
  connectionLimits?: Partial<ConnectionLimits>;
}

export interface ListenOptions {
  /** TLS (mutual with a client CA) for a host:port listener; a TlsCertificates can be reloaded later (SIGHUP). */
  tls?: TlsFiles | TlsCertificates;
  /** File mode of a Unix socket (default 0660: owner and group may connect). */
  socketMode?: number;
}

/** How HTTP calls are named in spans, metrics and log lines (`openai.v1/CreateChatCompletion`). */
export const OPENAI_HTTP_SERVICE = "openai.v1";

/** Group members may connect: in a pod, fsGroup puts the backend container in the socket's group. */
export const DEFAULT_SOCKET_MODE = 0o660;

/**
 * A running sidecar: the KvCache service, health and reflection on one gRPC
 * server, optionally health alone on a second one (Kubernetes probes reach the
 * pod IP while the data plane may be a Unix socket). The engine may still be
 * loading: until it is there, health says NOT_SERVING and calls get UNAVAILABLE.
 */
export class KvwardenServer {
  readonly health = new Health();
  /** Resolves once the engine is there; rejects if loading it failed. */
  readonly ready: Promise<void>;
  private readonly calls = new CallTracker();
  private readonly server: Server;
  private healthServer?: Server;
  private engine?: Engine;
  private listening = false;
  /** Remove the Unix sockets this server bound, once it has stopped. */
  private readonly socketRemovals: (() => void)[] = [];
  private readonly connectionLimits: ConnectionLimits;
  private readonly httpRuntime: RpcRuntime;
  private readonly maxRequestBytes: number;
  private httpFront?: HttpFront;
  private readonly log?: LogSink;

  constructor(engine: Engine | Promise<Engine>, info: ServiceInfo, options: KvwardenServerOptions = {}) {
    const { authenticator, metrics } = options;
    this.log = options.log;
    const tenantUsage = (tenant: string) => {
      const stats = this.engine?.stats({}, { caller: { tenant } });
      return stats && { kvBytes: stats.tenantKvBytes, sequences: stats.tenantSequenceCount };
    };
    // One middleware chain for every service: HTTP calls are the same calls to the same engine,
    // with one tracker (drain), one set of metrics, spans and log lines.
    const middleware = serverMiddleware({
      tracker: this.calls,
      admit: () => this.admit(),
      semconv: rpcSemconv(),
      metrics,
      tenantMetrics: metrics && authenticator?.enabled ? new TenantMetrics(metrics.registry, tenantUsage) : undefined,
      log: options.log,
      logContent: options.logContent,
      authenticator,
    });
    const runtime = new RpcRuntime(KV_CACHE_SERVICE, middleware);
    this.httpRuntime = new RpcRuntime(OPENAI_HTTP_SERVICE, middleware);
    this.maxRequestBytes = options.maxRequestBytes ?? maxRequestBytes(DEFAULT_MAX_SEQUENCE_TOKENS);
    // Every call but health (open for probes) is authenticated on its metadata, before its message is read;
    // KvCache refusals are logged and counted like its other calls.
    const guarded = (path: string) => !path.startsWith("/grpc.health.v1.");
    const kvCachePrefix = `/${KV_CACHE_SERVICE}/`;
    const onRefused = ({ path, credentials, details }: Refusal) => {
      if (path.startsWith(kvCachePrefix)) runtime.refused(path.slice(kvCachePrefix.length), credentials, details);
    };
    this.connectionLimits = { ...DEFAULT_CONNECTION_LIMITS, ...options.connectionLimits };
    this.server = new Server({
      ...connectionOptions(this.connectionLimits),
      "grpc.max_receive_message_length": this.maxRequestBytes,
      interceptors: authenticator?.enabled ? [authInterceptor(authenticator, guarded, onRefused)] : [],
    });
    // Two tokens are one too many: authentication must see both to refuse them.
    keepRepeatedHeaders(this.server, ["authorization"]);
    // grpc-js refuses a message over the limit before any handler runs: logged and counted from here.
    observeOverLimitMessages(this.server, ({ path, credentials, details }) => {
      if (path.startsWith(kvCachePrefix)) runtime.overLimit(path.slice(kvCachePrefix.length), credentials, details);
    });
    this.server.addService(lenientDecoding(KvCacheService), kvCacheService(() => this.currentEngine(), info, runtime));
    this.health.addToServer(this.server);
    // keepCase: reflection then describes the proto's own field names (sequence_id), which grpcurl and
    // buf curl accept in JSON beside their camelCase form; without it only sequenceId would parse.
    const definition = loadSync(join(PROTO_ROOT, "kvwarden/v1/kvwarden.proto"), { includeDirs: [PROTO_ROOT], keepCase: true });
    new ReflectionService(definition).addToServer(this.server);
    if (engine instanceof Engine) this.engine = engine;
    this.ready = Promise.resolve(engine).then((loaded) => {
      this.engine = loaded;
      this.updateHealth();
    });
    // A loading failure reaches whoever awaits `ready`; until someone does, it is not an unhandled rejection.
    this.ready.catch(() => {});
  }

  /** Binds `address` (host:port, or unix:/path) and starts serving; returns the bound port (0 for a socket). */
  async listen(address: string, options: ListenOptions = {}): Promise<number> {
    const socket = socketPath(address);
    let port = 0;
    if (socket) {
      // A socket is guarded by its file mode (and tokens); TLS on it would protect nothing more.
      if (options.tls) throw new Error("TLS is for host:port listeners; a Unix socket is protected by its file mode");
      this.socketRemovals.push(await bindPrivately(socket, options.socketMode ?? DEFAULT_SOCKET_MODE, (staged) => bind(this.server, staged, ServerCredentials.createInsecure())));
    } else {
      port = await bind(this.server, address, serverCredentials(options.tls));
    }
    this.listening = true;
    this.updateHealth();
    return port;
  }

  /** Serves grpc.health.v1 alone on `address` as well (host:port); returns the bound port. */
  async listenHealth(address: string): Promise<number> {
    const server = new Server(connectionOptions(this.connectionLimits));
    this.health.addToServer(server);
    this.healthServer = server;
    // Kubernetes gRPC probes speak neither TLS nor tokens.
    return bind(server, address, ServerCredentials.createInsecure());
  }

  /** Serves the OpenAI-compatible HTTP API (docs/http-api.md) on `address` (host:port) as well; returns the bound port. */
  async listenHttp(address: string): Promise<number> {
    // A JSON body spells tokens out at greater length than protobuf: four times the gRPC message limit.
    this.httpFront = new HttpFront({ engine: () => this.currentEngine(), runtime: this.httpRuntime, bodyLimit: 4 * this.maxRequestBytes });
    return this.httpFront.listen(address);
  }

  /**
   * Drains: health turns NOT_SERVING and new Prefill/Decode calls get
   * UNAVAILABLE; running calls may finish during most of `graceMs`, then the
   * rest are cancelled with UNAVAILABLE; with a KV store, every resident sequence is then offloaded
   * in what is left of the grace (docs/kv-store.md), and the servers stop.
   */
  async close(graceMs = 5_000): Promise<void> {
    const deadline = Date.now() + graceMs;
    this.health.set("draining");
    // Keep a quarter of the grace (at most a second) for cancelled calls to wind down.
    const windDown = Math.min(1_000, graceMs / 4);
    if (!(await this.calls.idle(graceMs - windDown))) {
      this.calls.cancelAll();
      await this.calls.idle(deadline - Date.now());
    }
    const offloads = await this.engine?.offloadAll(deadline);
    if (offloads && offloads.offloaded + offloads.failed > 0) this.log?.({ level: "info", msg: "offloaded resident sequences", ...offloads });
    await Promise.all([...[this.server, this.healthServer].map((server) => server && shutdown(server, Math.max(100, deadline - Date.now()))), this.httpFront?.close()]);
    for (const remove of this.socketRemovals.splice(0)) remove();
    this.engine?.close();
  }

  private updateHealth(): void {
    if (this.engine && this.listening && this.health.phase === "loading") this.health.set("serving");
  }

  private currentEngine(): Engine {
    if (!this.engine) throw new Unavailable("the model is loading; retry shortly");
    return this.engine;
  }

  private admit(): void {
    this.currentEngine();
    if (this.health.phase === "draining") throw new Unavailable("the server is shutting down");
  }
}

function bind(server: Server, address: string, credentials: ServerCredentials): Promise<number> {
  return new Promise((resolvePort, reject) => server.bindAsync(address, credentials, (error, bound) => (error ? reject(listenError(address, error)) : resolvePort(bound))));
}

/** Stops taking calls and waits for running ones up to `timeoutMs`, then cuts them off. */
function shutdown(server: Server, timeoutMs: number): Promise<void> {
  return new Promise((done) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      done();
    }, timeoutMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      done();
    });
  });
}
