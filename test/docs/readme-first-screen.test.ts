import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("../../", import.meta.url));
/** Issue 21: the README is read in one screen; everything else lives in docs/. */
const MOST_LINES = 120;

describe("README.md", () => {
  const readme = readFileSync(`${root}README.md`, "utf8");

  it(`stays short: at most ${MOST_LINES} lines`, () => {
    expect(readme.trimEnd().split("\n").length).toBeLessThanOrEqual(MOST_LINES);
  });

  it("links every page of docs/, so each topic is reachable from the first screen", () => {
    const pages = readdirSync(`${root}docs`).filter((name) => name.endsWith(".md"));
    const unlinked = pages.filter((name) => !readme.includes(`](docs/${name}`));
    expect(unlinked).toEqual([]);
  });

  it("gives the two set-up commands: serve the default model, run the tests", () => {
    expect(readme).toContain("npm ci && npm run build && npm run serve");
    expect(readme).toContain("make test");
  });
});
