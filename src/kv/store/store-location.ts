/** A store URL as messages and logs may show it: without user name or password. */
export function storeLocation(url: string): string {
  const parsed = new URL(url);
  parsed.username = "";
  parsed.password = "";
  return parsed.toString();
}
