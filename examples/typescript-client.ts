// A TypeScript client: prefill a prompt, stream a greedy continuation, free the sequence.
// Run against a server on 127.0.0.1:50051:  npx tsx examples/typescript-client.ts
import { credentials } from "@grpc/grpc-js";
import { DecodeRequest, KvCacheClient, PrefillRequest, ReleaseRequest, type PrefillResponse } from "../src/gen/kvwarden/v1/kvwarden.js";

const client = new KvCacheClient(process.env.KVWARDEN_ADDRESS ?? "127.0.0.1:50051", credentials.createInsecure());

const prefill = await new Promise<PrefillResponse>((resolve, reject) =>
  // fromPartial fills every unset field with its proto default.
  client.prefill(PrefillRequest.fromPartial({ sequenceId: "story-1", text: "Once upon a time" }), (error, response) =>
    error ? reject(error) : resolve(response),
  ),
);
console.log(`prefilled ${prefill.promptTokens} tokens, KV bytes ${prefill.kvBytes}`);

let text = "";
for await (const token of client.decode(DecodeRequest.fromPartial({ sequenceId: "story-1", maxNewTokens: 64 }))) {
  text += token.text;
}
console.log(`Once upon a time${text}`);

await new Promise((resolve, reject) => client.release(ReleaseRequest.fromPartial({ sequenceId: "story-1" }), (error, response) => (error ? reject(error) : resolve(response))));
client.close();
