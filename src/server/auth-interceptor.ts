import { Metadata, ServerInterceptingCall, ServerListenerBuilder, status, type ServerInterceptor } from "@grpc/grpc-js";
import type { Authenticator } from "./authenticator.js";
import { Unauthenticated } from "./status.js";

/**
 * Refuses calls without valid credentials with UNAUTHENTICATED before they
 * reach their service, for every method `guarded` names (reflection, and any
 * service added later); services that authenticate on their own, and health
 * for probes, are left out by the caller.
 */
export function authInterceptor(authenticator: Authenticator, guarded: (path: string) => boolean): ServerInterceptor {
  return (method, call) => {
    if (!guarded(method.path)) return new ServerInterceptingCall(call);
    return new ServerInterceptingCall(call, {
      start(next) {
        next(
          new ServerListenerBuilder()
            .withOnReceiveMetadata((metadata, pass) => {
              try {
                authenticator.callerOf({ metadata, getAuthContext: () => call.getAuthContext() });
              } catch (error) {
                if (!(error instanceof Unauthenticated)) throw error;
                call.sendStatus({ code: status.UNAUTHENTICATED, details: error.message, metadata: new Metadata() });
                return;
              }
              pass(metadata);
            })
            .build(),
        );
      },
    });
  };
}
