import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);
const root = fileURLToPath(new URL("../../", import.meta.url));
/** The built CLI, as users run it (npm test builds before testing). */
const CLI = `${root}dist/src/cli/main.js`;
const PAGE = "docs/configuration.md";
/** Every command has these; the page says so once instead of in each table. */
const EVERYWHERE = new Set(["--help", "--version"]);

async function help(args: string[]): Promise<string> {
  return (await run(process.execPath, [CLI, ...args, "--help"])).stdout;
}

/** The subcommands `kvwarden --help` lists (commander indents each by two spaces). */
async function subcommands(): Promise<string[]> {
  const commands = (await help([])).split(/^Commands:$/m)[1] ?? "";
  return [...commands.matchAll(/^ {2}([a-z][\w-]*)/gm)].map((m) => m[1]).filter((name) => name !== "help");
}

/** The long flags a `--help` lists: option lines start with two spaces and a dash; wrapped text is indented further. */
function helpFlags(text: string): string[] {
  return [...text.matchAll(/^ {2}(?:-\w, )?(--[\w-]+)/gm)].map((m) => m[1]).filter((flag) => !EVERYWHERE.has(flag));
}

/** The flags the page's section `## \`kvwarden NAME\`` lists, one table row each. */
function pageFlags(page: string, name: string): string[] | undefined {
  const section = page.split(/^## /m).find((part) => part.startsWith(`\`kvwarden ${name}\``));
  return section === undefined ? undefined : [...section.matchAll(/^\| `(--[\w-]+)/gm)].map((m) => m[1]);
}

describe(`${PAGE}`, () => {
  it("lists every flag of every subcommand's --help, and no flag --help lacks", async () => {
    const page = readFileSync(`${root}${PAGE}`, "utf8");
    const names = await subcommands();
    expect(names).toEqual(expect.arrayContaining(["serve", "convert", "eval"]));
    const problems: string[] = [];
    for (const name of names) {
      const documented = pageFlags(page, name);
      if (!documented) {
        problems.push(`${PAGE} has no section "## \`kvwarden ${name}\`" for the subcommand \`kvwarden ${name}\``);
        continue;
      }
      const offered = helpFlags(await help([name]));
      for (const flag of offered.filter((f) => !documented.includes(f))) {
        problems.push(`\`kvwarden ${name} --help\` lists ${flag}, missing from ${PAGE} (add a row to the table under "## \`kvwarden ${name}\`")`);
      }
      for (const flag of documented.filter((f) => !offered.includes(f))) {
        problems.push(`${PAGE} lists ${flag} under "## \`kvwarden ${name}\`", which \`kvwarden ${name} --help\` does not offer`);
      }
      for (const flag of new Set(documented.filter((f, i) => documented.indexOf(f) !== i))) {
        problems.push(`${PAGE} lists ${flag} twice under "## \`kvwarden ${name}\`"`);
      }
    }
    expect(problems).toEqual([]);
  });
});
