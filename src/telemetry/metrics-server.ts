import { createServer, type Server } from "node:http";
import type { Registry } from "prom-client";
import { listenError, parseHostPort } from "./host-port.js";

/** Serves `registry` on GET /metrics at `address` (HOST:PORT); resolves with the bound port. */
export class MetricsServer {
  private readonly server: Server;

  constructor(registry: Registry) {
    this.server = createServer((request, response) => {
      if (request.method !== "GET" || request.url?.split("?")[0] !== "/metrics") {
        response.writeHead(404, { "content-type": "text/plain" }).end("not found: metrics are at /metrics\n");
        return;
      }
      registry.metrics().then(
        (text) => response.writeHead(200, { "content-type": registry.contentType }).end(text),
        (error: unknown) => response.writeHead(500, { "content-type": "text/plain" }).end(String(error)),
      );
    });
  }

  listen(address: string): Promise<number> {
    const { host, port } = parseHostPort(address);
    return new Promise((resolve, reject) => {
      const failed = (error: Error) => reject(listenError(address, error));
      this.server.once("error", failed);
      this.server.listen(port, host, () => {
        this.server.off("error", failed);
        const bound = this.server.address();
        resolve(typeof bound === "object" && bound ? bound.port : port);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}
