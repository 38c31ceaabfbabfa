import { Metadata, status, type Client, type ServiceError } from "@grpc/grpc-js";

/** How a call with a raw body ended: its status, and how many messages came back. */
export interface RawOutcome {
  code: status;
  details: string;
  messages: number;
}

const passThrough = (bytes: Buffer) => bytes;

/** Sends `body` as the request of `path` exactly as given (no encoding), unary or server-streaming. */
export function rawCall(client: Client, path: string, streaming: boolean, body: Buffer, deadlineMs: number, metadata = new Metadata()): Promise<RawOutcome> {
  const options = { deadline: Date.now() + deadlineMs };
  return new Promise((resolve) => {
    if (!streaming) {
      client.makeUnaryRequest(path, passThrough, passThrough, body, metadata, options, (error: ServiceError | null) =>
        resolve({ code: error?.code ?? status.OK, details: error?.details ?? "", messages: error ? 0 : 1 }),
      );
      return;
    }
    let messages = 0;
    const stream = client.makeServerStreamRequest(path, passThrough, passThrough, body, metadata, options);
    stream.on("data", () => messages++);
    stream.on("error", (error: ServiceError) => resolve({ code: error.code, details: error.details, messages }));
    stream.on("end", () => resolve({ code: status.OK, details: "", messages }));
  });
}
