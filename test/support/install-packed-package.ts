import { execFile } from "node:child_process";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("../../", import.meta.url));

interface LockEntry {
  dev?: boolean;
  devOptional?: boolean;
  [field: string]: unknown;
}

/**
 * `npm pack`s this project and installs the tarball into an empty folder, offline, as a user's
 * project would get it: only the files the package ships and only its production dependencies.
 *
 * `npm install --offline kvwarden.tgz` cannot work here: the npm cache holds the dependency tarballs
 * `npm ci` fetched, by integrity, but not the registry metadata that resolving version ranges needs
 * (ENOTCACHED). So the folder gets a lockfile made from this project's: the tarball, plus the
 * production entries (devDependencies left out, so a client that leans on one fails to load), and
 * `npm ci --offline` installs exactly that from the cache. Install scripts are skipped: the client
 * needs none, and onnxruntime-node's would reach out for optional CUDA binaries.
 * Packs what `npm run build` last wrote to dist/.
 */
export async function installPackedPackage(): Promise<{ folder: string; tarball: string }> {
  const folder = await mkdtemp(join(tmpdir(), "kvwarden-npm-"));
  const { stdout } = await run("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", folder], { cwd: ROOT });
  const tarball = join(folder, (JSON.parse(stdout) as { filename: string }[])[0].filename);
  const manifest = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")) as Record<string, unknown>;
  const projectLock = JSON.parse(await readFile(join(ROOT, "package-lock.json"), "utf8")) as { packages: Record<string, LockEntry> };

  const dependency = { kvwarden: `file:${tarball}` };
  const packages: Record<string, LockEntry> = {
    "": { name: "kvwarden-user", dependencies: dependency },
    "node_modules/kvwarden": {
      version: manifest.version,
      resolved: `file:${tarball}`,
      dependencies: manifest.dependencies,
      bin: manifest.bin,
      engines: manifest.engines,
    },
  };
  for (const [path, entry] of Object.entries(projectLock.packages)) {
    if (path !== "" && !entry.dev && !entry.devOptional) packages[path] = entry;
  }
  await writeFile(join(folder, "package.json"), JSON.stringify({ name: "kvwarden-user", private: true, type: "module", dependencies: dependency }));
  await writeFile(join(folder, "package-lock.json"), JSON.stringify({ name: "kvwarden-user", lockfileVersion: 3, requires: true, packages }));
  try {
    await run("npm", ["ci", "--offline", "--ignore-scripts", "--no-audit", "--no-fund"], { cwd: folder });
  } catch (error) {
    const { stderr } = error as { stderr: string };
    if (!stderr.includes("ENOTCACHED")) throw error;
    throw new Error(`the npm cache lacks a dependency of the package: run \`npm ci\` in the project once (it fills the cache), then rerun.\n${stderr}`);
  }
  return { folder, tarball };
}
