/** Limits each tenant has beside the global budget (docs/architecture.md); an absent field = no limit. */
export interface TenantQuota {
  /** KV bytes one tenant's sequences may hold together. */
  kvBytes?: number;
  /** Sequences one tenant may hold at once. */
  sequences?: number;
  /** Tokens one request may feed or generate. */
  requestTokens?: number;
}
