import { createHash } from "node:crypto";
import type { KvDtype } from "../layer-cache.js";

/** What makes cached keys and values valid for one model only (docs/kv-store.md, "Key layout"). */
export interface FingerprintParts {
  /** A digest of the weights (e.g. sha256 of the checkpoint files or of the built graph). */
  weights: string;
  /** The step graph's version: keys and values from another graph layout are not interchangeable. */
  graphVersion: string;
  kvDtype: KvDtype;
}

/** A short, stable name for the model a snapshot belongs to: 16 hex digits of a sha256 over its parts. */
export function modelFingerprint({ weights, graphVersion, kvDtype }: FingerprintParts): string {
  return createHash("sha256").update(JSON.stringify(["kvwarden-model", weights, graphVersion, kvDtype])).digest("hex").slice(0, 16);
}
