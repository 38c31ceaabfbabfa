/** Number formats shared by the report's tables and its claims. */

/** 0.873 -> "87.3%". */
export function percent(fraction: number, digits = 1): string {
  return `${(fraction * 100).toFixed(digits)}%`;
}

/** 0.1 -> "10%", 0.35 -> "35%": budgets as keep fractions. */
export function budget(keepFraction: number): string {
  return `${+(keepFraction * 100).toFixed(1)}%`;
}

/** A signed percentage change: 2.345 -> "+2.35%". */
export function change(pct: number): string {
  return `${pct >= 0 ? "+" : ""}${pct.toFixed(2)}%`;
}

/** KL in nats, four decimals. */
export function nats(value: number): string {
  return value.toFixed(4);
}

/** A Markdown table, one string per line; "|" and line breaks in cells are escaped. */
export function markdownTable(headers: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const cell = (text: string) => text.replace(/\|/g, "\\|").replace(/\n/g, " ");
  return [`| ${headers.map(cell).join(" | ")} |`, `|${headers.map(() => "---").join("|")}|`, ...rows.map((row) => `| ${row.map(cell).join(" | ")} |`)];
}
