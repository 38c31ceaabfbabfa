/** Who is calling: sequence ids are scoped by tenant. */
export interface Caller {
  tenant: string;
}

/** The caller when authentication is off. */
export const ANONYMOUS: Caller = { tenant: "" };

/** What every public engine call takes beside its own arguments. */
export interface CallContext {
  /** Default ANONYMOUS. */
  caller?: Caller;
  /** Aborts the call (the client cancelled, or its deadline passed). */
  signal?: AbortSignal;
  /** Makes retries idempotent: a completed request with this id is answered from its stored result. */
  requestId?: string;
}
