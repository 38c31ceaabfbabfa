import type { ServiceDefinition } from "@grpc/grpc-js";

/**
 * A request body that is not a valid message. grpc-js answers a body it
 * cannot decode with INTERNAL, which reads as the server's fault; decoding
 * through `lenientDecoding` hands this marker to the handler instead, and the
 * runtime answers INVALID_ARGUMENT.
 */
export class MalformedRequest {
  constructor(readonly reason: string) {}
}

/** `definition` with request decoding that never throws: a body that does not parse becomes a MalformedRequest. */
export function lenientDecoding<S extends ServiceDefinition>(definition: S): S {
  const methods = Object.entries(definition).map(([name, method]) => [
    name,
    {
      ...method,
      requestDeserialize(bytes: Buffer): unknown {
        try {
          return method.requestDeserialize(bytes);
        } catch (error) {
          return new MalformedRequest(error instanceof Error ? error.message : String(error));
        }
      },
    },
  ]);
  return Object.fromEntries(methods) as S;
}
