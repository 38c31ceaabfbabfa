import type { ServiceDefinition } from "@grpc/grpc-js";
import { BinaryReader } from "@bufbuild/protobuf/wire";

/**
 * A request body that is not a valid message. grpc-js answers a body it
 * cannot decode with INTERNAL, which reads as the server's fault; decoding
 * through `lenientDecoding` hands this marker to the handler instead, and the
 * runtime answers INVALID_ARGUMENT.
 */
export class MalformedRequest {
  constructor(readonly reason: string) {}
}

const fatalUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Proto3 strings must be UTF-8. The default decoding replaces bad bytes with
 * U+FFFD, so two different invalid sequence ids would read as one id and
 * share a sequence: this one refuses them instead.
 */
function strictUtf8(bytes: Uint8Array): string {
  try {
    return fatalUtf8.decode(bytes);
  } catch {
    throw new Error("a string field is not valid UTF-8");
  }
}

/**
 * `definition` (a ts-proto service) with request decoding that never throws
 * and refuses strings that are not UTF-8: a body that does not parse becomes
 * a MalformedRequest.
 */
export function lenientDecoding<S extends ServiceDefinition>(definition: S): S {
  const methods = Object.entries(definition).map(([name, method]) => [
    name,
    {
      ...method,
      requestDeserialize(bytes: Buffer): unknown {
        try {
          // ts-proto's decode reads from a BinaryReader as well as from bytes: one with strict UTF-8.
          return method.requestDeserialize(new BinaryReader(bytes, strictUtf8) as unknown as Buffer);
        } catch (error) {
          return new MalformedRequest(error instanceof Error ? error.message : String(error));
        }
      },
    },
  ]);
  return Object.fromEntries(methods) as S;
}
