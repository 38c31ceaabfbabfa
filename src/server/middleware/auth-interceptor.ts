import { Metadata, ServerInterceptingCall, ServerListenerBuilder, status, type ServerInterceptor } from "@grpc/grpc-js";
import type { Authenticator, CredentialsOf } from "../authenticator.js";
import { Unauthenticated } from "../status.js";

/** A call refused for its credentials: its method's path, its credentials, and why. */
export interface Refusal {
  path: string;
  credentials: CredentialsOf;
  details: string;
}

/**
 * Refuses calls without valid credentials with UNAUTHENTICATED on their
 * metadata, before their message is read: grpc-js reads and decodes a
 * message only once the metadata is passed on, so an unauthenticated caller
 * never makes the server buffer or parse its body. Guards every method
 * `guarded` names (health is left open for probes by the caller);
 * `onRefused` hears of each refusal (to log and count it).
 */
export function authInterceptor(authenticator: Authenticator, guarded: (path: string) => boolean, onRefused: (refusal: Refusal) => void = () => {}): ServerInterceptor {
  return (method, call) => {
    if (!guarded(method.path)) return new ServerInterceptingCall(call);
    return new ServerInterceptingCall(call, {
      start(next) {
        next(
          new ServerListenerBuilder()
            .withOnReceiveMetadata((metadata, pass) => {
              const credentials = { metadata, getAuthContext: () => call.getAuthContext() };
              try {
                authenticator.callerOf(credentials);
              } catch (error) {
                if (!(error instanceof Unauthenticated)) throw error;
                onRefused({ path: method.path, credentials, details: error.message });
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
