/**
 * What the memory manager needs to know of a sequence holding KV memory
 * (docs/architecture.md): whose it is, what it holds, and whether it is idle.
 * Declared here so that src/kv/ depends on no engine type.
 */
export interface KvResident {
  /** The tenant that owns it ("" without authentication). */
  readonly tenant: string;
  /** Bytes of the budget it holds now. */
  readonly bytes: number;
  /** Set while a call works on it: such a resident is never a source of relief. */
  readonly busy: boolean;
  /** When a call last touched it (Date.now()); relief takes the least recently used first. */
  readonly lastUsed: number;
}
