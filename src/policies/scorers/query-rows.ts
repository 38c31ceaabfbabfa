import { InvalidEvictionError, type RecentQueries } from "../policy.js";

/** Indices of the last `count` recent-query rows, oldest first; `field` is the request field that asked for them. */
export function lastQueryRows(queries: RecentQueries, count: number, field: string): number[] {
  if (queries.count < count) {
    throw new InvalidEvictionError(field, `${field} needs the queries of the last ${count} tokens, but only ${queries.count} are held for this sequence`);
  }
  return Array.from({ length: count }, (_, i) => queries.count - count + i);
}

/** Indices of the recent-query rows at positions [start, end); every one of them must be held. */
export function queryRowsInSpan(queries: RecentQueries, span: { start: number; end: number }): number[] {
  const rows: number[] = [];
  queries.positions.forEach((position, row) => {
    if (position >= span.start && position < span.end) rows.push(row);
  });
  if (rows.length !== span.end - span.start) {
    const held = queries.count === 0 ? "none" : `[${queries.positions[0]}, ${queries.positions[queries.count - 1] + 1})`;
    throw new InvalidEvictionError(
      "eviction.proxy_span",
      `eviction.proxy_span [${span.start}, ${span.end}) needs the queries of those positions, but the held ones are ${held}`,
    );
  }
  return rows;
}
