import { Ajv } from "ajv";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { parseByteSize } from "../../src/cli/byte-size.js";
import { ROOT } from "./support/serve-flags.js";

// No Helm binary or maintained JavaScript renderer of Helm templates exists here, so the chart is
// checked statically: metadata, values against their schema, and what the templates refer to.
const CHART = join(ROOT, "deploy/helm/kvwarden");
const read = (path: string) => readFileSync(join(CHART, path), "utf8");
const values = parse(read("values.yaml")) as Record<string, unknown>;
const templates = Object.fromEntries(readdirSync(join(CHART, "templates")).map((name) => [name, read(`templates/${name}`)]));
const helpers = templates["_helpers.tpl"];

describe("deploy/helm/kvwarden", () => {
  it("has the chart metadata Helm needs", () => {
    const chart = parse(read("Chart.yaml"));
    expect(chart).toMatchObject({ apiVersion: "v2", name: "kvwarden", type: "application" });
    expect(chart.version).toMatch(/^\d+\.\d+\.\d+$/);
    expect(chart.appVersion).toBe(JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version);
    expect(chart.kubeVersion).toMatch(/>=1\.29/);
    expect(Object.keys(templates).sort()).toEqual(["NOTES.txt", "_helpers.tpl", "deployment.yaml", "service.yaml"]);
    expect(existsSync(join(CHART, "README.md"))).toBe(true);
  });

  it("has default values that satisfy values.schema.json, which rejects bad ones", () => {
    const validate = new Ajv({ allErrors: true }).compile(JSON.parse(read("values.schema.json")));
    expect(validate(values), JSON.stringify(validate.errors)).toBe(true);
    const kvwarden = values.kvwarden as Record<string, unknown>;
    expect(parseByteSize(kvwarden.kvBudget as string)).toBe(256 * 2 ** 20);
    const broken = [
      { ...values, kvwarden: { ...kvwarden, healthPort: 0 } },
      { ...values, kvwarden: { ...kvwarden, executionProvider: "tpu" } },
      { ...values, kvwarden: { ...kvwarden, kvBudgt: "1GiB" } },
      { ...values, tracing: { enabled: true, otlpProtocol: "thrift" } },
      { ...values, image: { repository: "", pullPolicy: "IfNotPresent" } },
    ];
    for (const bad of broken) expect(validate(bad), JSON.stringify(bad)).toBe(false);
  });

  it("refers only to values that exist and to named templates it defines", () => {
    const source = Object.values(templates).join("\n");
    for (const [, path] of source.matchAll(/\.Values((?:\.[A-Za-z_]\w*)+)/g)) {
      let node: unknown = values;
      for (const key of path.slice(1).split(".")) {
        expect(node !== null && typeof node === "object" && key in node, `.Values${path}`).toBe(true);
        node = (node as Record<string, unknown>)[key];
      }
    }
    const defined = new Set([...helpers.matchAll(/\{\{-? define "([^"]+)"/g)].map((match) => match[1]));
    for (const [, name] of source.matchAll(/include "([^"]+)"/g)) expect(defined, name).toContain(name);
    for (const [, file] of source.matchAll(/\.Files\.Get "([^"]+)"/g)) expect(existsSync(join(CHART, file)), file).toBe(true);
  });

  it("balances every block with an end", () => {
    for (const [name, text] of Object.entries(templates)) {
      const actions = [...text.replace(/\{\{-?\s*\/\*[\s\S]*?\*\/\s*-?\}\}/g, "").matchAll(/\{\{-?\s*(\w+)/g)].map((match) => match[1]);
      const opened = actions.filter((word) => ["if", "with", "range", "define"].includes(word)).length;
      expect(actions.filter((word) => word === "end").length, name).toBe(opened);
    }
  });

  it("labels objects the way Helm's best practices say", () => {
    const labels = /\{\{-? define "kvwarden.labels" -?\}\}([\s\S]*?)\{\{-? end/.exec(helpers)![1];
    const selector = /\{\{-? define "kvwarden.selectorLabels" -?\}\}([\s\S]*?)\{\{-? end/.exec(helpers)![1];
    expect(labels).toContain("helm.sh/chart:");
    expect(labels).toContain("app.kubernetes.io/version:");
    expect(labels).toContain("app.kubernetes.io/managed-by: {{ .Release.Service }}");
    expect(labels).toContain('include "kvwarden.selectorLabels"');
    expect(selector).toContain("app.kubernetes.io/name:");
    expect(selector).toContain("app.kubernetes.io/instance: {{ .Release.Name }}");
    for (const name of ["deployment.yaml", "service.yaml"]) expect(templates[name]).toContain('include "kvwarden.labels"');
    expect(templates["deployment.yaml"]).toMatch(/matchLabels:\s*\{\{- include "kvwarden.selectorLabels"/);
  });

  it("defines the sidecar as a named template: a native sidecar with gRPC probes on the health port", () => {
    const sidecar = /\{\{-? define "kvwarden.sidecarContainer" -?\}\}([\s\S]*?)\n\{\{- end \}\}/.exec(helpers)![1];
    expect(sidecar).toContain("restartPolicy: Always");
    for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
      expect(sidecar).toMatch(new RegExp(`${probe}:\\s*grpc:\\s*port: \\{\\{ \\.Values\\.kvwarden\\.healthPort \\}\\}`));
    }
    expect(sidecar).toContain("service: liveness");
    expect(sidecar).toContain("OTEL_EXPORTER_OTLP_ENDPOINT");
    expect(templates["deployment.yaml"]).toMatch(/initContainers:\s*- \{\{- include "kvwarden.sidecarContainer" \. \| nindent 10 \}\}/);
  });

  it("agrees with the plain manifests on ports, socket and grace", () => {
    const kvwarden = values.kvwarden as Record<string, number | string>;
    const manifest = readFileSync(join(ROOT, "deploy/kubernetes/backend-with-kvwarden.yaml"), "utf8");
    expect(manifest).toContain(`unix:${kvwarden.socketDir}/${kvwarden.socketName}`);
    expect(manifest).toContain(`0.0.0.0:${kvwarden.healthPort}`);
    expect(manifest).toContain(`0.0.0.0:${kvwarden.metricsPort}`);
    expect(values.terminationGracePeriodSeconds as number).toBeGreaterThan(kvwarden.shutdownGraceSeconds as number);
  });
});
