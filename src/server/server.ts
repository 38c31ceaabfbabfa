import { Server, ServerCredentials } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation } from "grpc-health-check";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Engine } from "../engine/engine.js";
import { KvCacheService } from "../gen/kvwarden/v1/kvwarden.js";
import { kvCacheService, type ServiceInfo } from "./kv-cache-service.js";

const SERVICE_NAME = "kvwarden.v1.KvCache";
const PROTO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", ...(import.meta.url.includes("/dist/") ? [".."] : []), "proto");

/** A running sidecar: the KvCache service, health and reflection on one gRPC server. */
export class KvwardenServer {
  readonly health = new HealthImplementation({ "": "NOT_SERVING", [SERVICE_NAME]: "NOT_SERVING" });
  private readonly server = new Server({ "grpc.max_receive_message_length": 64 * 1024 * 1024 });

  constructor(
    readonly engine: Engine,
    info: ServiceInfo,
  ) {
    this.server.addService(KvCacheService, kvCacheService(engine, info));
    this.health.addToServer(this.server);
    const definition = loadSync(join(PROTO_ROOT, "kvwarden/v1/kvwarden.proto"), { includeDirs: [PROTO_ROOT] });
    new ReflectionService(definition).addToServer(this.server);
  }

  /** Binds `address` (host:port, or unix:/path) and starts serving; returns the bound port. */
  async listen(address: string): Promise<number> {
    const port = await new Promise<number>((resolvePort, reject) =>
      this.server.bindAsync(address, ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolvePort(bound))),
    );
    this.setServing(true);
    return port;
  }

  setServing(serving: boolean): void {
    const status = serving ? "SERVING" : "NOT_SERVING";
    this.health.setStatus("", status);
    this.health.setStatus(SERVICE_NAME, status);
  }

  /** Stops taking calls, lets running ones finish for `graceMs`, then cancels the rest. */
  async close(graceMs = 5_000): Promise<void> {
    this.setServing(false);
    await new Promise<void>((done) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        done();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        done();
      });
    });
    this.engine.close();
  }
}
