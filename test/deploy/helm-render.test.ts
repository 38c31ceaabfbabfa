import { describe, expect, it } from "vitest";
import { goFloat, mergeValues, renderString } from "./support/helm-render.js";

// The chart tests render with test/deploy/support/helm-render.ts; these pin down that it follows Go
// text/template and Helm where the chart relies on it (outputs as `helm template` gives them).
describe("the chart renderer", () => {
  it("trims whitespace at {{- and -}} and drops comments, trim marks included", () => {
    expect(renderString("a  \n  {{- .x }}  \n b", { x: "X" })).toBe("aX  \n b");
    expect(renderString("a {{ .x -}} \n\n b", { x: "X" })).toBe("a Xb");
    expect(renderString("a\n{{- /* a comment with {{ braces }} */}}\nb", {})).toBe("a\nb");
    expect(renderString("a\n{{- /* gone */ -}}\nb", {})).toBe("ab");
    expect(renderString("{{/* {{- include \"x\" . }} */}}ok", {})).toBe("ok");
  });

  it("branches on Go truth: false, 0, nil and empty strings, lists and maps are false", () => {
    const pick = "{{ if .v }}T{{ else if .w }}W{{ else }}F{{ end }}";
    for (const v of [false, 0, null, "", [], {}]) expect(renderString(pick, { v }), JSON.stringify(v)).toBe("F");
    for (const v of [true, 1, "0", [0], { a: 1 }]) expect(renderString(pick, { v }), JSON.stringify(v)).toBe("T");
    expect(renderString(pick, { w: 1 })).toBe("W");
    expect(renderString("{{ with .m }}{{ .k }}{{ else }}none{{ end }}", { m: { k: "K" } })).toBe("K");
    expect(renderString("{{ with .m }}{{ .k }}{{ else }}none{{ end }}", { m: 0 })).toBe("none");
  });

  it("ranges over lists and sorted maps, with variables, $ and an else for empty ones", () => {
    expect(renderString("{{ range $i, $v := .l }}{{ $i }}={{ $v }}{{ $.s }} {{ end }}", { l: ["a", "b"], s: "!" })).toBe("0=a! 1=b! ");
    expect(renderString("{{ range $k, $v := .m }}{{ $k }}:{{ $v }},{{ end }}", { m: { b: "2", a: "1" } })).toBe("a:1,b:2,");
    expect(renderString("{{ range .l }}[{{ . }}]{{ else }}empty{{ end }}", { l: [] })).toBe("empty");
    expect(renderString('{{ $x := printf "%s-%s" .a "b" }}{{ $x }}', { a: "a" })).toBe("a-b");
  });

  it("prints values numbers as Go float64s: 1000000 is 1e+06 unless it goes through int", () => {
    expect(goFloat(32)).toBe("32");
    expect(goFloat(123456)).toBe("123456");
    expect(goFloat(1_000_000)).toBe("1e+06");
    expect(goFloat(1_234_567)).toBe("1.234567e+06");
    expect(goFloat(0.5)).toBe("0.5");
    expect(goFloat(0.00001)).toBe("1e-05");
    expect(renderString("{{ .n }} {{ .n | quote }} {{ .n | int | quote }} {{ int .n }}", { n: 1_000_000 })).toBe('1e+06 "1e+06" "1000000" 1000000');
    expect(renderString('{{ printf "%d" .n }} {{ printf "%d" (int .n) }} {{ printf "%s" .n }}', { n: 8081 })).toBe("%!d(float64=8081) 8081 %!s(float64=8081)");
  });

  it("has the Sprig functions the chart uses, with Sprig's argument order", () => {
    expect(renderString('{{ default "d" .x }} {{ default "d" .y }} {{ .y | default "d" }}', { x: "", y: "v" })).toBe("d v v");
    expect(renderString('{{ "abcdef" | trunc 3 }} {{ "a-" | trimSuffix "-" }} {{ contains "b" "abc" }} {{ "a+b" | replace "+" "_" }}', {})).toBe("abc a true a_b");
    expect(renderString('{{ splitList ":" "[::]:50051" | last }} {{ hasPrefix "un" "unix:/x" }}', {})).toBe("50051 true");
    expect(renderString("x:{{ .m | toYaml | nindent 2 }}", { m: { b: { c: 1 }, a: "s" } })).toBe("x:\n  a: s\n  b:\n    c: 1");
    expect(renderString('{{ and 1 "" }}|{{ or 0 "x" }}|{{ not .e }}|{{ empty .e }}', { e: [] })).toBe("|x|true|true");
  });

  it("includes named templates with their own dot", () => {
    const helpers = '{{- define "t.name" -}}\n{{ .a }}/{{ $.a }}\n{{- end }}';
    expect(renderString('k:{{- include "t.name" .m | nindent 4 }}', { m: { a: "A" } }, helpers)).toBe("k:\n    A/A");
  });

  it("fails the render where Helm does", () => {
    expect(() => renderString('{{ required "need x" .x }}', {})).toThrow(/need x/);
    expect(() => renderString('{{ required "need x" .x }}', { x: "" })).toThrow(/need x/);
    expect(renderString('{{ required "need x" .x }}', { x: "ok" })).toBe("ok");
    expect(() => renderString('{{ fail "no" }}', {})).toThrow(/no/);
    expect(() => renderString("{{ .a.b }}", {})).toThrow(/nil pointer/);
    expect(renderString("[{{ .a }}]", {})).toBe("[]");
    expect(() => renderString("{{ .x | frobnicate }}", { x: 1 })).toThrow(/frobnicate/);
    expect(() => renderString("{{ if .x }}open", { x: 1 })).toThrow(/without end/);
    expect(() => renderString('{{ include "missing" . }}', {})).toThrow(/no template/);
  });

  it("merges user values as Helm does: maps deep, lists and scalars replaced, null deletes", () => {
    const base = { a: { b: 1, c: [1, 2], d: "x" }, e: true };
    expect(mergeValues(base, { a: { b: 2, c: [3] }, e: null })).toEqual({ a: { b: 2, c: [3], d: "x" } });
    expect(base).toEqual({ a: { b: 1, c: [1, 2], d: "x" }, e: true });
  });
});
