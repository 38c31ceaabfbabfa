const UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
};

/**
 * Parses sizes such as `512MiB`, `1.5GB` or `65536`. Written here because the
 * usual npm parser (`bytes`) reads "MB" as 2^20 and rejects IEC units.
 */
export function parseByteSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = UNITS[(match?.[2] || "b").toLowerCase()];
  if (!match || unit === undefined) throw new Error(`'${text}' is not a size (examples: 512MiB, 2GB, 1048576)`);
  return Math.floor(Number(match[1]) * unit);
}

/** A size as its largest exact IEC unit (`512MiB`, `1MiB`), the way help shows defaults. */
export function formatByteSize(bytes: number): string {
  for (const unit of ["gib", "mib", "kib"]) {
    if (bytes >= UNITS[unit] && bytes % UNITS[unit] === 0) return `${bytes / UNITS[unit]}${unit.slice(0, -2).toUpperCase()}iB`;
  }
  return String(bytes);
}
