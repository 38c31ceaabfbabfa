/**
 * Tenant names end up in logs, metric labels and Stats, so they are kept
 * short and plain: a letter or digit first, then letters, digits and . _ @ -
 * (enough for service names, DNS names and e-mail-like certificate subjects).
 */
const TENANT_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

export function isTenantName(name: string): boolean {
  return TENANT_NAME.test(name);
}

export const TENANT_NAME_RULE = "1 to 64 characters: letters, digits and . _ @ -, starting with a letter or digit";
