import type { Server } from "@grpc/grpc-js";
import type { IncomingHttpHeaders, ServerHttp2Stream } from "node:http2";
import { onEachHttp2Server } from "./grpc-http2-servers.js";

/**
 * Shows grpc-js every value of the headers `names` that a request repeats.
 * Node's HTTP/2 layer keeps only the first of a repeated single-value header
 * (authorization is one), so a request with two `authorization` headers
 * would reach authentication as if it carried the first alone; with both
 * values in its metadata, authentication refuses it. Hooks each HTTP/2
 * server grpc-js makes, ahead of grpc-js's own stream handler.
 */
export function keepRepeatedHeaders(server: Server, names: readonly string[]): void {
  onEachHttp2Server(server, (http2Server) => {
    http2Server.prependListener("stream", (_stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
      for (const name of names) {
        const values = rawHeaders.filter((_, i) => i % 2 === 1 && rawHeaders[i - 1] === name);
        if (values.length > 1) (headers as Record<string, string | string[] | undefined>)[name] = values;
      }
    });
  });
}
