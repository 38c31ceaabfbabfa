import { readFileSync } from "node:fs";

/** Resident memory of a process in bytes (Linux /proc). */
export function rssOf(pid: number): number {
  const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return kb ? Number(kb[1]) * 1024 : NaN;
}
