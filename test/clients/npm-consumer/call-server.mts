// What a Node backend writes after `npm install kvwarden`: compiled and run by
// test/clients/npm-package.test.ts inside an empty folder where only the packed tarball is installed.
// Every verb once; prints what it got as JSON (the fields of test/support/greedy-story.ts).
import { FinishReason, KvwardenClient, type DecodeResponse } from "kvwarden/client";

const [address, sequenceId, tokens] = process.argv.slice(2);
const fork = `${sequenceId}-fork`;
const client = new KvwardenClient(address);

/** Never called: tsc fails on the marked line unless the installed declarations really type the client. */
export function declarationsAreTyped(): void {
  // @ts-expect-error a Prefill without sequenceId
  void client.prefill({ text: "no sequence id" });
}

try {
  const info = await client.info();
  const prefill = await client.prefill({ sequenceId, text: "Once upon a time" });
  const streamed: DecodeResponse[] = [];
  for await (const token of client.decode({ sequenceId, maxNewTokens: Number(tokens) })) streamed.push(token);
  const forked = await client.fork(sequenceId, fork);
  const truncated = await client.truncate(fork, prefill.promptTokens);
  await client.release(fork);
  const evicted = await client.evict({ sequenceId, eviction: { policy: "streaming_llm", maxTokens: 8 } });
  const stats = await client.stats({ sequenceId });
  const released = await client.release(sequenceId);
  console.log(
    JSON.stringify({
      model: info.model?.name,
      promptTokens: prefill.promptTokens,
      tokenIds: streamed.map((token) => token.tokenId),
      text: streamed.map((token) => token.text).join(""),
      finishReason: FinishReason[streamed[streamed.length - 1].finishReason],
      forkPosition: forked.position,
      truncatedPosition: truncated.position,
      droppedTokens: truncated.droppedTokens,
      entriesAfterEviction: Number(evicted.eviction?.entriesAfter),
      statsPosition: stats.sequences[0].position,
      released: released.found,
    }),
  );
} finally {
  client.close();
}
