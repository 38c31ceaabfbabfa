// A stand-in backend for trying the sidecar: every 10 s it prefills a prompt, generates a
// story, evicts with SnapKV and releases the sequence, logging what it did. Replace it
// with your service, which talks to the sidecar over the same socket.
import { KvwardenClient } from "/app/dist/src/client/index.js";

// KVWARDEN_TOKEN: the bearer token, when the sidecar runs with --auth-tokens.
const kv = new KvwardenClient(process.env.KVWARDEN_ADDRESS, { token: process.env.KVWARDEN_TOKEN || undefined });
for (let i = 0; ; i++) {
  const sequenceId = `demo-${i}`;
  try {
    const prefill = await kv.prefill({ sequenceId, text: "Once upon a time" });
    const story = await kv.generate({ sequenceId, maxNewTokens: 64 });
    const { eviction } = await kv.evict({ sequenceId, eviction: { policy: "snapkv", maxTokens: 32 } });
    await kv.release(sequenceId);
    console.log(JSON.stringify({ sequenceId, promptTokens: prefill.promptTokens, generated: story.tokenIds.length, evictedAttentionShare: eviction?.evictedAttentionShare }));
  } catch (error) {
    console.error(JSON.stringify({ sequenceId, error: String(error) }));
  }
  await new Promise((resolve) => setTimeout(resolve, 10_000));
}
