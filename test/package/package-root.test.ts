import { existsSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { PACKAGE_ROOT, packagePath } from "../../src/package/package-root.js";

describe("the package root", () => {
  it("is the folder of kvwarden's package.json, holding the proto the server loads", () => {
    expect(JSON.parse(readFileSync(packagePath("package.json"), "utf8")).name).toBe("kvwarden");
    expect(existsSync(packagePath("proto", "kvwarden", "v1", "kvwarden.proto"))).toBe(true);
    expect(packagePath("models", "recall")).toBe(`${PACKAGE_ROOT}/models/recall`);
  });
});
