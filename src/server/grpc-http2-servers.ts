import type { Server, ServerCredentials } from "@grpc/grpc-js";
import type { Http2Server } from "node:http2";

/** The part of grpc-js's Server (1.14) that makes its HTTP/2 servers: private, hence this narrow view. */
interface Http2ServerFactory {
  createHttp2Server(credentials: ServerCredentials): Http2Server;
}

/**
 * Runs `setUp` on each HTTP/2 server grpc-js makes for `server` (one per
 * bound address), before grpc-js adds its own stream handler: the one place
 * where what grpc-js does below its API (headers as received, statuses it
 * sends on its own) can be seen. grpc-js is pinned to one version; the tests
 * of each hook fail if this method changes.
 */
export function onEachHttp2Server(server: Server, setUp: (http2Server: Http2Server) => void): void {
  const factory = server as unknown as Http2ServerFactory;
  const create = factory.createHttp2Server.bind(server);
  factory.createHttp2Server = (credentials) => {
    const http2Server = create(credentials);
    setUp(http2Server);
    return http2Server;
  };
}
