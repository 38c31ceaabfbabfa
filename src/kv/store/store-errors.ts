/**
 * What can go wrong between a sequence and the KV store (docs/kv-store.md, "Failure modes"). Each
 * error names the gRPC status the server answers with, so a caller can tell a store that is down
 * (retry later; the sequence stays resident) from a snapshot that is damaged (never restored as garbage).
 */
export type KvStoreErrorCode = "UNAVAILABLE" | "RESOURCE_EXHAUSTED" | "DATA_LOSS" | "FAILED_PRECONDITION" | "ABORTED";

export abstract class KvStoreError extends Error {
  abstract readonly code: KvStoreErrorCode;
}

/** The store cannot be reached (connection refused or lost, timeout). */
export class KvStoreUnavailable extends KvStoreError {
  readonly code = "UNAVAILABLE";
  constructor(store: string, cause: unknown) {
    super(`KV store ${store} is unavailable: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

/** The store refuses writes for lack of memory (Redis maxmemory with the noeviction policy) or disk. */
export class KvStoreFull extends KvStoreError {
  readonly code = "RESOURCE_EXHAUSTED";
  constructor(store: string, cause: unknown) {
    super(`KV store ${store} is full: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

/** A stored snapshot is damaged: a chunk is missing, truncated or fails its checksum, or the encoding is invalid. */
export class SnapshotCorrupt extends KvStoreError {
  readonly code = "DATA_LOSS";
}

/** A snapshot that cannot go into this sequence: another shape, format version or model. */
export class SnapshotMismatch extends KvStoreError {
  readonly code = "FAILED_PRECONDITION";
}

/** Another replica holds the sequence's lease: `holder` names it, so a router can send the call there. */
export class SequenceHeldElsewhere extends KvStoreError {
  readonly code = "ABORTED";
  constructor(
    readonly sequenceKey: string,
    readonly holder: string,
    readonly expiresInMs: number,
  ) {
    super(`sequence ${sequenceKey} is held by replica '${holder}' for up to ${expiresInMs} ms more`);
  }
}

/** A write under a lease this replica no longer holds (it expired, or a newer fencing token took it): refused. */
export class StaleLease extends KvStoreError {
  readonly code = "ABORTED";
  constructor(
    readonly sequenceKey: string,
    readonly token: number,
  ) {
    super(`lease ${token} on sequence ${sequenceKey} is no longer held: a newer holder may have written; nothing was written`);
  }
}
