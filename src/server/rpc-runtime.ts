import type { handleServerStreamingCall, handleUnaryCall, ServiceError } from "@grpc/grpc-js";
import type { CredentialsOf } from "./authenticator.js";
import { newServerCall, type Admission, type RpcScope, type ServerMiddleware, type SurfaceCall } from "./middleware/server-call.js";
import { StreamFlow } from "./stream-flow.js";
import { MessageTooLarge, toServiceError, Unauthenticated } from "./status.js";


/**
 * Turns async handlers of one service into grpc-js handlers (and runs the
 * HTTP front's calls), each call through the server's middleware
 * (middleware/server-middleware.ts); failures become the status that says
 * whose fault they were (status.ts).
 */
export class RpcRuntime {
  constructor(
    private readonly service: string,
    private readonly middleware: ServerMiddleware,
  ) {}

  unary<Req, Res>(method: string, admission: Admission, handler: (request: Req, scope: RpcScope) => Promise<Res> | Res): handleUnaryCall<Req, Res> {
    return (call, callback) => {
      this.invoke(method, admission, call, call.request, handler).then(
        (response) => callback(null, response),
        (error: Partial<ServiceError>) => callback(error),
      );
    };
  }

  /**
   * Runs one call of any transport that can present itself as a SurfaceCall
   * (the HTTP front does): the same span, admission, metrics and log line as
   * a gRPC call. Rejects with the call's ServiceError, its `cause` the error the handler threw.
   */
  async invoke<Req, Res>(method: string, admission: Admission, transport: SurfaceCall, request: Req, handler: (request: Req, scope: RpcScope) => Promise<Res> | Res): Promise<Res> {
    const call = newServerCall(this.service, method, admission, transport, request);
    try {
      return await this.middleware(call, async () => handler(request, call.scope));
    } catch (error) {
      throw Object.assign(toServiceError(error), { cause: error });
    }
  }

  stream<Req, Res>(method: string, admission: Admission, handler: (request: Req, scope: RpcScope) => AsyncIterable<Res>): handleServerStreamingCall<Req, Res> {
    return (transport) => {
      const call = newServerCall(this.service, method, admission, transport, transport.request);
      const { signal } = call.abort;
      const flow = new StreamFlow(transport, signal);
      call.scope.backpressure = () => flow.full;
      this.middleware(call, async () => {
        for await (const message of handler(transport.request, call.scope)) {
          if (signal.aborted) break;
          flow.write(message);
        }
      }).then(
        () => transport.end(),
        (error: unknown) => transport.emit("error", toServiceError(error)),
      );
    };
  }

  /**
   * Records (span, metrics, log line) a call that authentication refused on
   * its metadata, before its message was read: it runs through the
   * middleware, whose authentication refuses it again with the same words.
   */
  refused(method: string, credentials: CredentialsOf, details: string): void {
    this.record(method, credentials, new Unauthenticated(details));
  }

  /**
   * Records a call that grpc-js refused with RESOURCE_EXHAUSTED for a
   * message over the receive limit, unread: the middleware authenticates it
   * (a caller with bad credentials was refused before, on its metadata) and
   * counts and logs it like any other call.
   */
  overLimit(method: string, credentials: CredentialsOf, details: string): void {
    this.record(method, credentials, new MessageTooLarge(details));
  }

  /** Runs a call that already ended, with `failure`, through the middleware, for its span, metrics and log line. */
  private record(method: string, credentials: CredentialsOf, failure: Error): void {
    const transport: SurfaceCall = { metadata: credentials.metadata, getAuthContext: credentials.getAuthContext, cancelled: false, getDeadline: () => Infinity, on: () => undefined };
    this.invoke(method, "always", transport, undefined, () => {
      throw failure;
    }).catch(() => {});
  }
}
