import { writeFileSync } from "node:fs";

/** A report printed as it is built and kept, to be written as Markdown at the end. */
export class MarkdownReport {
  private readonly lines: string[] = [];

  print(line = ""): void {
    console.log(line);
    this.lines.push(line);
  }

  write(file: string): void {
    writeFileSync(file, this.lines.join("\n") + "\n");
  }
}
