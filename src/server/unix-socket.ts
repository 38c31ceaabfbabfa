import { chmodSync, lstatSync, mkdtempSync, renameSync, rmdirSync, unlinkSync } from "node:fs";
import { basename, dirname, join } from "node:path";

/** The file of a unix: address (unix:/path or unix:///path), or undefined for host:port. */
export function socketPath(address: string): string | undefined {
  return address.startsWith("unix:") ? address.replace(/^unix:(\/\/)?/, "") : undefined;
}

/**
 * Binds a Unix socket at `path` that only `mode` may connect to, with no
 * moment when it is more open: `bind` creates it inside a fresh directory only
 * this user can enter, it gets its mode there, and is then renamed into place.
 * A socket left by an earlier process is replaced; anything else at the path
 * makes the bind fail. Resolves to what removes the socket at shutdown (the
 * listener, bound under the staging name, would not).
 */
export async function bindPrivately(path: string, mode: number, bind: (address: string) => Promise<unknown>): Promise<() => void> {
  const existing = fileType(path);
  if (existing !== undefined && existing !== "socket") throw new Error(`cannot listen on ${path}: a ${existing} is in the way`);
  const staging = mkdtempSync(join(dirname(path), ".kvwarden-"));
  const staged = join(staging, basename(path));
  try {
    await bind(`unix:${staged}`);
    chmodSync(staged, mode);
    renameSync(staged, path);
  } finally {
    try {
      unlinkSync(staged);
    } catch {
      // Renamed into place (or never created).
    }
    rmdirSync(staging);
  }
  const { ino } = lstatSync(path);
  return () => {
    // Only this socket: a successor that has bound the path since keeps its own.
    if (fileType(path) === "socket" && lstatSync(path).ino === ino) unlinkSync(path);
  };
}

function fileType(path: string): string | undefined {
  try {
    const stat = lstatSync(path);
    return stat.isSocket() ? "socket" : stat.isDirectory() ? "directory" : "file";
  } catch {
    return undefined;
  }
}

/** Parses a socket mode given in octal ("660", "0600"); only read and write bits make sense for a socket. */
export function parseSocketMode(text: string): number {
  if (!/^0?[0-7]{3}$/.test(text)) throw new Error(`socket mode must be octal like 0660, got '${text}'`);
  const mode = parseInt(text, 8);
  if ((mode & 0o200) === 0) throw new Error("socket mode must let the owner write (connect)");
  return mode;
}
