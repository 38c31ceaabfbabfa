import type { ServerMiddleware } from "./server-call.js";

/**
 * One middleware running `layers` in order, the first outermost (as
 * nice-grpc's composeServerMiddleware does). Written here rather than taken
 * from a library: grpc-js has no middleware of its own (its interceptors see
 * messages and metadata, not a call's outcome), and nice-grpc's would mean
 * replacing the grpc-js server.
 */
export function composeMiddleware(...layers: ServerMiddleware[]): ServerMiddleware {
  return <T>(call: Parameters<ServerMiddleware>[0], next: () => Promise<T>) =>
    layers.reduceRight<() => Promise<T>>((inner, layer) => () => layer(call, inner), next)();
}
