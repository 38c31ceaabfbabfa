// Completes package-lock.json with entries for platform-specific optional packages
// (darwin, win32, musl, ... builds of buf and rollup) that the npm mirror this project is
// developed against does not carry. Without them `npm ci` refuses the lock file as out of
// sync. Each entry names its os/cpu/libc, so npm skips it on other platforms and, where it
// applies, resolves it from the registry by version. Run after `npm install` changes the lock.
import { readFileSync, writeFileSync } from "node:fs";

const path = new URL("../package-lock.json", import.meta.url);
const lock = JSON.parse(readFileSync(path, "utf8"));
const packages = lock.packages;
const PLATFORM = /-(darwin|linux|win32|android|freebsd|openbsd|openharmony)-([a-z0-9]+)(?:-(gnu|musl|msvc|gnueabihf|musleabihf|eabi))?$/;

let added = 0;
for (const [, entry] of Object.entries(packages)) {
  for (const [name, version] of Object.entries(entry.optionalDependencies ?? {})) {
    if (packages[`node_modules/${name}`]) continue;
    const match = PLATFORM.exec(name);
    if (!match) throw new Error(`optional dependency ${name} is missing from the lock and is not a platform build`);
    const [, os, cpu, abi] = match;
    packages[`node_modules/${name}`] = {
      version,
      ...(entry.dev ? { dev: true } : {}),
      optional: true,
      os: [os],
      cpu: [cpu],
      ...(abi?.startsWith("musl") ? { libc: ["musl"] } : abi === "gnu" ? { libc: ["glibc"] } : {}),
    };
    added++;
  }
}
writeFileSync(path, JSON.stringify(lock, null, 2) + "\n");
console.log(`added ${added} platform entries`);
