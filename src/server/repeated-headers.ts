import type { Server, ServerCredentials } from "@grpc/grpc-js";
import type { Http2Server, IncomingHttpHeaders, ServerHttp2Stream } from "node:http2";

/** The part of grpc-js's Server (1.14) that makes its HTTP/2 servers: private, hence this narrow view. */
interface Http2ServerFactory {
  createHttp2Server(credentials: ServerCredentials): Http2Server;
}

/**
 * Shows grpc-js every value of the headers `names` that a request repeats.
 * Node's HTTP/2 layer keeps only the first of a repeated single-value header
 * (authorization is one), so a request with two `authorization` headers
 * would reach authentication as if it carried the first alone; with both
 * values in its metadata, authentication refuses it. Hooks each HTTP/2
 * server grpc-js makes, ahead of grpc-js's own stream handler.
 */
export function keepRepeatedHeaders(server: Server, names: readonly string[]): void {
  const factory = server as unknown as Http2ServerFactory;
  const create = factory.createHttp2Server.bind(server);
  factory.createHttp2Server = (credentials) => {
    const http2Server = create(credentials);
    http2Server.prependListener("stream", (_stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
      for (const name of names) {
        const values = rawHeaders.filter((_, i) => i % 2 === 1 && rawHeaders[i - 1] === name);
        if (values.length > 1) (headers as Record<string, string | string[] | undefined>)[name] = values;
      }
    });
    return http2Server;
  };
}
