import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import GithubSlugger from "github-slugger";
import MarkdownIt from "markdown-it";
import { describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("../../", import.meta.url));
const markdown = new MarkdownIt({ html: true });

/** README.md and every page under docs/ (reports included): what a reader follows links through. */
function pages(): string[] {
  const walk = (folder: string): string[] =>
    readdirSync(folder).flatMap((name) => {
      const path = join(folder, name);
      return statSync(path).isDirectory() ? walk(path) : name.endsWith(".md") ? [path] : [];
    });
  return [join(root, "README.md"), ...walk(join(root, "docs"))];
}

/** The anchors GitHub gives a page's headings. */
function anchors(page: string): Set<string> {
  const slugger = new GithubSlugger();
  const tokens = markdown.parse(readFileSync(page, "utf8"), {});
  return new Set(tokens.flatMap((token, i) => (token.type === "heading_open" ? [slugger.slug(tokens[i + 1].content.replace(/`/g, ""))] : [])));
}

function links(page: string): string[] {
  return markdown
    .parse(readFileSync(page, "utf8"), {})
    .flatMap((token) => token.children ?? [])
    .filter((token) => token.type === "link_open")
    .map((token) => String(token.attrGet("href") ?? ""))
    .filter((href) => !/^[a-z]+:/i.test(href));
}

/** Why a relative link does not resolve, or undefined when it does. */
function brokenLink(page: string, href: string): string | undefined {
  const [path, fragment] = href.split("#");
  const target = path === "" ? page : resolve(dirname(page), decodeURIComponent(path));
  if (!target.startsWith(root)) return `${href} leaves the repository`;
  if (!existsSync(target)) return `${href}: ${relative(root, target)} does not exist`;
  if (fragment && target.endsWith(".md") && !anchors(target).has(fragment)) return `${href}: ${relative(root, target)} has no heading #${fragment}`;
  return undefined;
}

describe("documentation links", () => {
  it("every relative link in README.md and docs/ names an existing file and heading", () => {
    const broken = pages().flatMap((page) =>
      links(page).flatMap((href) => {
        const problem = brokenLink(page, href);
        return problem ? [`${relative(root, page)}: ${problem}`] : [];
      }),
    );
    expect(broken).toEqual([]);
  });
});
