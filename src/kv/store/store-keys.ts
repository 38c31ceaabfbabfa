import type { FenceKeys } from "./kv-store.js";

/**
 * Where one sequence's snapshot lives (docs/kv-store.md, "Key layout"):
 * `<prefix>:v1:{<model>:<tenant>:<sequence>}:<kind>`. The model fingerprint and the tenant are part of
 * every key, so a snapshot of another model or tenant is never found, let alone restored. Tenant and
 * sequence ids are percent-encoded, so a ':' in them cannot forge another key. The braces are a Redis
 * Cluster hash tag: all keys of one sequence sit in one slot, where one script can touch them together.
 */
export class SequenceKeys implements FenceKeys {
  readonly base: string;

  constructor(prefix: string, modelFingerprint: string, tenant: string, sequenceId: string) {
    this.base = `${prefix}:v1:{${modelFingerprint}:${encodeURIComponent(tenant)}:${encodeURIComponent(sequenceId)}}`;
  }

  get manifest(): string {
    return `${this.base}:manifest`;
  }

  get lease(): string {
    return `${this.base}:lease`;
  }

  get fence(): string {
    return `${this.base}:fence`;
  }

  /** Chunk `index` of the snapshot written as `snapshotId`: each snapshot has its own chunk keys. */
  chunk(snapshotId: string, index: number): string {
    return `${this.base}:chunk:${snapshotId}:${index}`;
  }
}
