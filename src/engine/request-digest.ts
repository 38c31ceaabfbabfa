import { createHash } from "node:crypto";
import { configure } from "safe-stable-stringify";

// Keys sorted and bigints (eviction seeds) kept, so equal requests always encode alike.
const canonicalJson = configure({ bigint: true, deterministic: true, circularValue: Error });

/** What a request id stands for: a retry must carry the same request. */
export interface RequestFingerprint {
  /** SHA-256 of the whole request's canonical encoding (the request id left out). */
  digest: string;
  /** Names the first request in the error a reused id gets. */
  description: string;
}

/** The fingerprint of `method` called on `sequenceId` with `content`: everything else the request carries. */
export function requestFingerprint(method: string, sequenceId: string, content: object): RequestFingerprint {
  const digest = createHash("sha256").update(canonicalJson({ method, sequenceId, content })!).digest("hex");
  return { digest, description: `${method} of '${sequenceId}'` };
}
