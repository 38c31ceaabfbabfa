import type { Tokenizer } from "../../src/model/tokenizers/tokenizer.js";
import { healthOf } from "./health-probe.js";
import { statusOf, type TestServer } from "./test-server.js";

/** The real tokenizer, observed: `tokenizing` resolves once the server starts tokenizing a text. */
export function observeTokenizing(tokenizer: Tokenizer): { tokenizer: Tokenizer; tokenizing: Promise<void> } {
  let started!: () => void;
  const tokenizing = new Promise<void>((resolve) => (started = resolve));
  const observed: Tokenizer = Object.create(tokenizer);
  observed.encodeInSlices = (text, signal) => {
    started();
    return tokenizer.encodeInSlices(text, signal);
  };
  return { tokenizer: observed, tokenizing };
}

/**
 * Sends a text Prefill and, once tokenizing has begun, a health check and a Stats: the order in
 * which the three are answered, and the Prefill's outcome.
 */
export async function answersWhileTokenizing(t: TestServer, tokenizing: Promise<void>, text: string) {
  const answered: string[] = [];
  const prefill = statusOf(t.client.prefill({ sequenceId: "long", text })).then((outcome) => {
    answered.push("prefill");
    return outcome;
  });
  await tokenizing;
  const health = healthOf(t.address, "kvwarden.v1.KvCache").then((state) => answered.push(`health ${state}`));
  const stats = t.client.stats().then((reply) => answered.push(`stats ${reply.sequenceCount}`));
  await Promise.all([prefill, health, stats]);
  return { answered, prefill: await prefill };
}
