import { credentials, loadPackageDefinition, type Client, type ServiceError } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const HEALTH_PROTO = join(dirname(createRequire(import.meta.url).resolve("grpc-health-check/package.json")), "proto/health/v1/health.proto");
const health = loadPackageDefinition(loadSync(HEALTH_PROTO, { enums: String })) as unknown as {
  grpc: { health: { v1: { Health: new (address: string, creds: ReturnType<typeof credentials.createInsecure>) => HealthClient } } };
};
interface HealthClient extends Client {
  check(request: { service: string }, callback: (error: ServiceError | null, response: { status: string }) => void): void;
}

/** The grpc.health.v1 status of `service` at `address`, as a probe asks it (a fresh connection). */
export function healthOf(address: string, service: string): Promise<string> {
  const client = new health.grpc.health.v1.Health(address, credentials.createInsecure());
  return new Promise((resolve, reject) =>
    client.check({ service }, (error, response) => {
      client.close();
      if (error) reject(error);
      else resolve(response.status);
    }),
  );
}
