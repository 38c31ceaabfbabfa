// What a Node backend writes after `npm install kvwarden`: compiled and run by
// test/clients/npm-package.test.ts inside an empty folder where only the packed tarball is installed.
import { FinishReason, KvwardenClient, type DecodeResponse } from "kvwarden/client";

const [address, sequenceId] = process.argv.slice(2);
const client = new KvwardenClient(address);
try {
  const info = await client.info();
  const prefill = await client.prefill({ sequenceId, text: "Once upon a time" });
  const streamed: DecodeResponse[] = [];
  for await (const token of client.decode({ sequenceId, maxNewTokens: 20 })) streamed.push(token);
  const released = await client.release(sequenceId);
  console.log(
    JSON.stringify({
      model: info.model?.name,
      promptTokens: prefill.promptTokens,
      tokenIds: streamed.map((token) => token.tokenId),
      text: streamed.map((token) => token.text).join(""),
      finishReason: FinishReason[streamed[streamed.length - 1].finishReason],
      released: released.found,
    }),
  );
} finally {
  client.close();
}
