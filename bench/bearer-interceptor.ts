import { InterceptingCall, type Interceptor } from "@grpc/grpc-js";

/** A grpc-js client interceptor that sends `authorization: Bearer <token>` on every call. */
export function bearer(token: string): Interceptor {
  return (callOptions, next) =>
    new InterceptingCall(next(callOptions), {
      start(metadata, listener, proceed) {
        metadata.set("authorization", `Bearer ${token}`);
        proceed(metadata, listener);
      },
    });
}
