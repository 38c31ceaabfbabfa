import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { packageDirectorySync } from "package-directory";

/**
 * The folder holding kvwarden's package.json, found by walking up from this module, so the same
 * answer comes from src/ under tsx, from dist/src/ after a build, and from an installed package.
 */
export const PACKAGE_ROOT: string = (() => {
  const root = packageDirectorySync({ cwd: dirname(fileURLToPath(import.meta.url)) });
  if (!root) throw new Error("kvwarden's package.json was not found above its modules");
  return root;
})();

/** A path inside the package (proto/, models/, package.json). */
export function packagePath(...segments: string[]): string {
  return join(PACKAGE_ROOT, ...segments);
}
