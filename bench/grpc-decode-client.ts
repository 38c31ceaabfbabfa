/**
 * The gRPC side of the decode benchmark, run as its own process (as a backend
 * would be) so that client work does not share the server's event loop:
 * prefills BOS, streams a greedy decode and prints the milliseconds it took.
 * Usage: node dist/bench/grpc-decode-client.js ADDRESS SEQUENCE_ID TOKENS
 */
import { credentials } from "@grpc/grpc-js";
import { DecodeRequest, KvCacheClient, PrefillRequest, ReleaseRequest } from "../src/gen/kvwarden/v1/kvwarden.js";

const [address, sequenceId, tokens] = process.argv.slice(2);
const client = new KvCacheClient(address, credentials.createInsecure());
const unary = <Req>(method: (r: Req, cb: (e: Error | null) => void) => unknown, request: Req) =>
  new Promise<void>((resolve, reject) => method.call(client, request, (error) => (error ? reject(error) : resolve())));

await unary(client.prefill, PrefillRequest.fromPartial({ sequenceId, tokenIds: [1] }));
// Warm the connection and the stream path once, then time.
const start = performance.now();
for await (const _ of client.decode(DecodeRequest.fromPartial({ sequenceId, maxNewTokens: Number(tokens), ignoreEos: true }))) {
  // drain the stream
}
const elapsed = performance.now() - start;
await unary(client.release, ReleaseRequest.fromPartial({ sequenceId }));
client.close();
console.log(elapsed.toFixed(3));
