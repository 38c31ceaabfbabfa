import type { Caller } from "./caller.js";
import { EngineError } from "./engine-error.js";
import type { Sequence } from "./sequence.js";

export interface SequenceTableOptions {
  /** Idle sequences are dropped after this long. */
  ttlMs: number;
  /** Makes an empty sequence for `tenant`. */
  create: (id: string, tenant: string) => Sequence;
  /** Why `tenant` may not open another sequence now (its quota); undefined when it may. */
  newSequenceRefusal: (tenant: string) => string | undefined;
}

/**
 * The sequences, scoped by tenant (an id names a different sequence for each tenant), with the
 * claim a call holds on one while it works and the TTL that drops the idle ones.
 */
export class SequenceTable {
  /** Keyed by tenant and sequence id (see keyOf). */
  private readonly sequences = new Map<string, Sequence>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly options: SequenceTableOptions) {
    this.sweeper = setInterval(() => this.expireIdle(), Math.max(100, Math.min(options.ttlMs / 4, 10_000)));
    this.sweeper.unref();
  }

  get size(): number {
    return this.sequences.size;
  }

  all(): IterableIterator<Sequence> {
    return this.sequences.values();
  }

  ofTenant(tenant: string): Sequence[] {
    return [...this.sequences.values()].filter((s) => s.tenant === tenant);
  }

  /** Whether the sequence under `key` (sequenceKey) is resident. */
  has(key: string): boolean {
    return this.sequences.has(key);
  }

  get(caller: Caller, sequenceId: string): Sequence | undefined {
    return this.sequences.get(sequenceKey(caller.tenant, sequenceId));
  }

  /** An unknown id and another tenant's id get the same answer: nothing leaks. */
  lookup(caller: Caller, sequenceId: string): Sequence {
    const sequence = this.get(caller, sequenceId);
    if (!sequence) throw new EngineError("NOT_FOUND", `sequence '${sequenceId}' not found (never created, released or expired)`);
    return sequence;
  }

  /** A new, empty sequence in the table, unless the tenant's quota refuses it. */
  create(caller: Caller, sequenceId: string): Sequence {
    const refusal = this.options.newSequenceRefusal(caller.tenant);
    if (refusal) throw new EngineError("RESOURCE_EXHAUSTED", refusal);
    const sequence = this.options.create(sequenceId, caller.tenant);
    this.sequences.set(sequenceKey(caller.tenant, sequenceId), sequence);
    return sequence;
  }

  /** Takes the sequence out of the table and gives its memory back; returns the bytes freed. */
  remove(sequence: Sequence): number {
    this.sequences.delete(sequenceKey(sequence.tenant, sequence.id));
    return sequence.release();
  }

  /** Runs `work` holding the sequence; a new sequence whose first call fails is removed again. */
  async withSequence<T>(sequence: Sequence, isNew: boolean, work: () => Promise<T>): Promise<T> {
    sequence.claim(isNew);
    try {
      return await work();
    } catch (error) {
      if (isNew) this.remove(sequence);
      throw error;
    } finally {
      sequence.unclaim();
    }
  }

  /** Drops sequences idle for longer than the TTL. */
  expireIdle(now = Date.now()): void {
    for (const sequence of this.sequences.values()) {
      if (!sequence.busy && now - sequence.lastUsed > this.options.ttlMs) this.remove(sequence);
    }
  }

  close(): void {
    clearInterval(this.sweeper);
    for (const sequence of this.sequences.values()) sequence.release();
    this.sequences.clear();
  }
}

/** How the table keys a sequence: by tenant and id. */
export function sequenceKey(tenant: string, sequenceId: string): string {
  return `${tenant}\u0000${sequenceId}`;
}

/** The tenant and sequence id a sequenceKey was made of. */
export function splitSequenceKey(key: string): { tenant: string; sequenceId: string } {
  const at = key.indexOf("\u0000");
  return { tenant: key.slice(0, at), sequenceId: key.slice(at + 1) };
}
