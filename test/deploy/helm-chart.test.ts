import { Ajv } from "ajv";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { parseByteSize } from "../../src/cli/byte-size.js";
import { parseSocketMode } from "../../src/server/unix-socket.js";
import { mergeValues, renderChart } from "./support/helm-render.js";
import { parseManifests, secretFileAt, type Manifest } from "./support/pod.js";
import { flagValues, ROOT, serveFlags } from "./support/serve-flags.js";

// No Helm binary or maintained JavaScript renderer of Helm templates exists here, so the chart is
// checked statically (metadata, values against their schema, what the templates refer to) and
// rendered with support/helm-render.ts, a renderer of the template subset the chart uses.
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

  it("says a renewed TLS certificate is taken on SIGHUP, not on a restart, and where the signal comes from", () => {
    const tlsBlock = /^tls:\n(?: .*\n)+/m.exec(read("values.yaml"))![0];
    const comments = tlsBlock.match(/# .*/g)!.join(" ");
    expect(comments).toContain("kvwarden re-reads them on SIGHUP");
    expect(comments).not.toMatch(/restart/i);
    expect(comments).toContain("Nothing in the chart sends the signal");
    // kubelet updates a whole-directory Secret mount but never a subPath one: the reload depends on it.
    expect(helpers).not.toMatch(/^\s*subPath:/m);
    expect(read("README.md")).toContain(`-c kvwarden -- node -e 'process.kill(1, "SIGHUP")'`);
  });
});

/** The chart's Deployment rendered with `values` over the defaults, and its pod's parts. */
function renderPod(overrides: Record<string, unknown> = {}, options: { validate?: boolean } = {}) {
  const [deployment] = parseManifests(renderChart(CHART, { values: overrides, ...options })["deployment.yaml"], "deployment.yaml");
  const pod = deployment.spec.template.spec as Manifest;
  const sidecar = pod.initContainers.find((c: Manifest) => c.name === "kvwarden") as Manifest;
  const backend = pod.containers[0] as Manifest;
  return { deployment, pod, sidecar, backend, args: flagValues(sidecar.args.slice(1)) };
}

/** Everything the chart can turn on, with a backend of the user's (the demo one dials no TLS). */
const EVERYTHING = {
  kvwarden: { listen: "0.0.0.0:50051", socketMode: "0640", maxBatchSize: 8, maxQueue: 16, maxPromptBytes: "256KiB" },
  auth: { enabled: true, secretName: "kv-auth", tokensKey: "tokens.txt", backendToken: { secretName: "kv-backend", key: "token" } },
  tls: { enabled: true, secretName: "kv-tls", clientCA: true },
  tenancy: { kvBudget: "64MiB", maxSequences: 16, maxRequestTokens: 1_000_000 },
  backend: { demo: false, image: { repository: "registry.example/backend", tag: "1.0.0" } },
};

describe("deploy/helm/kvwarden rendered", () => {
  let flags: Set<string>;
  beforeAll(async () => {
    flags = await serveFlags();
  });

  /** Flags serve accepts, each once, every value a string (Kubernetes takes no numbers in args). */
  const expectServeArgs = (sidecar: Manifest) => {
    expect(sidecar.args[0]).toBe("serve");
    for (const arg of sidecar.args) expect(typeof arg, String(arg)).toBe("string");
    const named = sidecar.args.filter((arg: string) => arg.startsWith("--"));
    expect(new Set(named).size, named.join(" ")).toBe(named.length);
    for (const flag of named) expect(flags, flag).toContain(flag);
  };

  it("by default serves as before: the socket, no auth, TLS or quotas, batches of 32, only the socket volume", () => {
    const { pod, sidecar, backend, args } = renderPod();
    expectServeArgs(sidecar);
    expect(args.get("--listen")).toBe("unix:/var/run/kvwarden/kvwarden.sock");
    expect(args.get("--max-batch-size")).toBe("32");
    for (const flag of ["--auth-tokens", "--tls-cert", "--tls-key", "--tls-client-ca", "--socket-mode", "--tenant-kv-budget", "--tenant-max-sequences", "--max-request-tokens", "--max-queue", "--max-prompt-bytes"]) {
      expect(args.has(flag), flag).toBe(false);
    }
    expect(pod.volumes.map((v: Manifest) => v.name)).toEqual(["kvwarden-socket"]);
    expect(sidecar.volumeMounts.map((m: Manifest) => m.name)).toEqual(["kvwarden-socket"]);
    expect(sidecar.ports.map((p: Manifest) => p.name)).toEqual(["grpc-health", "metrics"]);
    expect(backend.env).toEqual([{ name: "KVWARDEN_ADDRESS", value: "unix:/var/run/kvwarden/kvwarden.sock" }]);
  });

  it("passes the same values as the plain manifest for every flag the manifest sets (but its --auth-tokens)", () => {
    const manifest = parseManifests(readFileSync(join(ROOT, "deploy/kubernetes/backend-with-kvwarden.yaml"), "utf8"), "manifest");
    const plain = manifest.find((m) => m.kind === "Deployment")!.spec.template.spec.initContainers[0];
    const chart = renderPod().args;
    for (const [flag, value] of flagValues(plain.args.slice(1))) {
      if (flag !== "--auth-tokens") expect(chart.get(flag), flag).toBe(value);
    }
  });

  it("with auth, TLS, quotas and a batch size set, emits those flags with paths that lie in read-only Secret mounts", () => {
    const { pod, sidecar, backend, args } = renderPod(EVERYTHING);
    expectServeArgs(sidecar);
    expect(args.get("--listen")).toBe("0.0.0.0:50051");
    expect(args.get("--max-batch-size")).toBe("8");
    expect(args.get("--socket-mode")).toBe("0640");
    expect(args.get("--max-queue")).toBe("16");
    expect(args.get("--max-prompt-bytes")).toBe("256KiB");
    expect(args.get("--tenant-kv-budget")).toBe("64MiB");
    expect(args.get("--tenant-max-sequences")).toBe("16");
    expect(args.get("--max-request-tokens")).toBe("1000000"); // through int: not 1e+06

    expect(args.get("--auth-tokens")).toBe("/etc/kvwarden/auth/tokens.txt");
    expect(secretFileAt(pod, sidecar, args.get("--auth-tokens")!)).toEqual({ secretName: "kv-auth", key: "tokens.txt", readOnly: true, defaultMode: 0o440 });
    expect(args.get("--tls-cert")).toBe("/etc/kvwarden/tls/tls.crt");
    expect(secretFileAt(pod, sidecar, args.get("--tls-cert")!)).toEqual({ secretName: "kv-tls", key: "tls.crt", readOnly: true, defaultMode: 0o440 });
    expect(secretFileAt(pod, sidecar, args.get("--tls-key")!)).toMatchObject({ secretName: "kv-tls", key: "tls.key", readOnly: true });
    expect(secretFileAt(pod, sidecar, args.get("--tls-client-ca")!)).toMatchObject({ secretName: "kv-tls", key: "ca.crt", readOnly: true });

    // Every Secret volume is mounted read-only, and only in kvwarden's container.
    const secretVolumes = pod.volumes.filter((v: Manifest) => v.secret).map((v: Manifest) => v.name);
    expect(secretVolumes.sort()).toEqual(["kvwarden-auth", "kvwarden-tls"]);
    for (const mount of sidecar.volumeMounts.filter((m: Manifest) => secretVolumes.includes(m.name))) expect(mount.readOnly, mount.name).toBe(true);
    expect(backend.volumeMounts.map((m: Manifest) => m.name)).toEqual(["kvwarden-socket"]);

    // The backend dials the TCP port on localhost with its own token from a Secret key.
    expect(sidecar.ports).toContainEqual({ name: "grpc", containerPort: 50051 });
    expect(backend.env).toContainEqual({ name: "KVWARDEN_ADDRESS", value: "localhost:50051" });
    expect(backend.env).toContainEqual({ name: "KVWARDEN_TOKEN", valueFrom: { secretKeyRef: { name: "kv-backend", key: "token" } } });
  });

  it("with kvStore, reads the store URL from its Secret into KVWARDEN_KV_STORE (never the args) and names the replica after its pod", () => {
    const { sidecar, args } = renderPod({ kvStore: { enabled: true, secretName: "kv-store", urlKey: "redis-url", prefix: "prod", leaseSeconds: 15, offloadIdleAfterSeconds: 300 } });
    expectServeArgs(sidecar);
    expect(sidecar.env).toContainEqual({ name: "KVWARDEN_KV_STORE", valueFrom: { secretKeyRef: { name: "kv-store", key: "redis-url" } } });
    expect(args.has("--kv-store")).toBe(false);
    expect(args.get("--kv-store-prefix")).toBe("prod");
    expect(args.get("--kv-store-lease")).toBe("15");
    expect(args.get("--offload-idle-after")).toBe("300");
    // Kubernetes expands $(POD_NAME) from the container's env: leases name the pod a router can reach.
    expect(args.get("--replica-name")).toBe("$(POD_NAME)");
    expect(sidecar.env.map((e: Manifest) => e.name)).toContain("POD_NAME");
    expect(renderPod().sidecar.env.map((e: Manifest) => e.name)).not.toContain("KVWARDEN_KV_STORE");
  });

  it("asks the TLS Secret for ca.crt only with clientCA, and reads the backend token from the auth Secret by default", () => {
    const { pod, sidecar, backend, args } = renderPod({ ...EVERYTHING, tls: { enabled: true, secretName: "kv-tls" }, auth: { enabled: true, secretName: "kv-auth", backendToken: { key: "backend" } } });
    expect(args.has("--tls-client-ca")).toBe(false);
    expect(pod.volumes.find((v: Manifest) => v.name === "kvwarden-tls").secret.items.map((i: Manifest) => i.key)).toEqual(["tls.crt", "tls.key"]);
    expect(secretFileAt(pod, sidecar, args.get("--auth-tokens")!)).toMatchObject({ secretName: "kv-auth", key: "tokens" });
    expect(backend.env).toContainEqual({ name: "KVWARDEN_TOKEN", valueFrom: { secretKeyRef: { name: "kv-auth", key: "backend" } } });
  });

  it("gives the demo backend its token with auth on, and says how to reload tokens", () => {
    const values = { auth: { enabled: true, secretName: "kv-auth", backendToken: { key: "backend" } } };
    const { pod, sidecar, backend, args } = renderPod(values);
    expect(args.get("--listen")).toBe("unix:/var/run/kvwarden/kvwarden.sock");
    expect(secretFileAt(pod, sidecar, args.get("--auth-tokens")!).readOnly).toBe(true);
    expect(backend.env).toContainEqual({ name: "KVWARDEN_TOKEN", valueFrom: { secretKeyRef: { name: "kv-auth", key: "backend" } } });
    expect(read("files/demo-backend.mjs")).toContain("token: process.env.KVWARDEN_TOKEN");
    const notes = renderChart(CHART, { values })["NOTES.txt"];
    expect(notes).toContain(`node -e 'process.kill(1, "SIGHUP")'`);
    expect(notes).toContain("rollout restart deploy/story-kvwarden");
    expect(renderChart(CHART)["NOTES.txt"]).not.toContain("SIGHUP");
  });

  it("refuses values kvwarden or the demo backend cannot run with, in the schema and again in the templates", () => {
    const demoAuth = { auth: { enabled: true, secretName: "kv-auth" } };
    const socketTls = { tls: { enabled: true, secretName: "kv-tls" }, backend: EVERYTHING.backend };
    expect(() => renderPod(demoAuth)).toThrow(/auth.backendToken.key/);
    expect(() => renderPod({ ...EVERYTHING, backend: { demo: true } })).toThrow(/demo backend dials without TLS/);
    expect(() => renderPod(socketTls)).toThrow(/schema/);
    // Without the schema (the named templates in a chart of one's own), the templates still refuse.
    expect(() => renderPod(socketTls, { validate: false })).toThrow(/tls.enabled needs kvwarden.listen/);
    expect(() => renderPod({ auth: { enabled: true, backendToken: { key: "b" } } }, { validate: false })).toThrow(/auth.enabled needs auth.secretName/);
    expect(() => renderPod({ ...EVERYTHING, tls: { enabled: true } }, { validate: false })).toThrow(/tls.enabled needs tls.secretName/);
  });
});

describe("deploy/helm/kvwarden/values.schema.json for auth, TLS, tenancy and batching", () => {
  const schema = JSON.parse(read("values.schema.json"));
  const validate = new Ajv({ allErrors: true }).compile(schema);
  // Only the fields named change: the chart's values with these merged over them, as Helm merges.
  const withValues = (overrides: Record<string, unknown>) => mergeValues(values, overrides);

  it("accepts the defaults with everything turned on", () => {
    const good = withValues(EVERYTHING);
    expect(validate(good), JSON.stringify(validate.errors)).toBe(true);
    expect(validate(withValues({ tenancy: { kvBudget: "1.5 GiB", maxSequences: 0, maxRequestTokens: 0 } })), JSON.stringify(validate.errors)).toBe(true);
  });

  it("rejects negative or malformed quotas, batch sizes, modes, addresses and Secret references", () => {
    const broken: Record<string, unknown>[] = [
      { tenancy: { maxSequences: -1 } },
      { tenancy: { maxRequestTokens: -5 } },
      { tenancy: { maxSequences: 1.5 } },
      { tenancy: { kvBudget: "-64MiB" } },
      { tenancy: { kvBudget: "lots" } },
      { tenancy: { kvBudgt: "64MiB" } },
      { kvwarden: { maxBatchSize: 0 } },
      { kvwarden: { maxBatchSize: "32" } },
      { kvwarden: { maxQueue: -1 } },
      { kvwarden: { maxQueue: 2.5 } },
      { kvwarden: { maxPromptBytes: "a lot" } },
      { kvwarden: { socketMode: "0999" } },
      { kvwarden: { socketMode: "0466" } },
      { kvwarden: { socketMode: 660 } },
      { kvwarden: { listen: "unix:/tmp/x.sock" } },
      { kvwarden: { listen: "0.0.0.0" } },
      { auth: { enabled: true } },
      { auth: { enabled: true, secretName: "" } },
      { auth: { enabled: true, secretName: "Not_A_Name" } },
      { auth: { enabled: false, tokensKey: "../etc/passwd" } },
      { auth: { enabled: false, tokensKey: "" } },
      { auth: { enabled: false, backendToken: { key: "a/b" } } },
      { auth: { enabled: false, secret: "kv-auth" } },
      { tls: { enabled: true, secretName: "kv-tls" } },
      { tls: { enabled: true }, kvwarden: { listen: "0.0.0.0:50051" } },
      { tls: { enabled: "yes" } },
    ];
    for (const bad of broken) expect(validate(withValues(bad)), JSON.stringify(bad)).toBe(false);
  });

  it("agrees with kvwarden's own parsing of socket modes and sizes", () => {
    const modeSchema = { ...schema.properties.kvwarden.properties.socketMode, type: "string" };
    const modeOk = new Ajv().compile(modeSchema);
    for (const mode of ["0660", "660", "0600", "0200", "0777", "0460", "0100", "0999", "06600", "0o660", "rw"]) {
      let parsed = true;
      try {
        parseSocketMode(mode);
      } catch {
        parsed = false;
      }
      expect(modeOk(mode), mode).toBe(parsed);
    }
    const sizeOk = new Ajv().compile(schema.definitions.size);
    for (const size of ["64MiB", "1.5GB", "512 kib", "1048576", "2b"]) {
      expect(sizeOk(size), size).toBe(true);
      expect(parseByteSize(size), size).toBeGreaterThan(0);
    }
    for (const size of ["-1MiB", "1TiB", "MiB", "1 MiBs"]) {
      expect(sizeOk(size), size).toBe(false);
      expect(() => parseByteSize(size), size).toThrow();
    }
  });

  it("uses only regular expressions Helm's Go validator reads (RE2: no lookaround, no backreferences)", () => {
    const patterns = JSON.stringify(schema).match(/"pattern":"((?:[^"\\]|\\.)*)"/g)!.map((entry) => JSON.parse(`{${entry}}`).pattern as string);
    expect(patterns.length).toBeGreaterThan(5);
    for (const pattern of patterns) expect(pattern, pattern).not.toMatch(/\(\?[=!<]|\\[1-9]/);
  });
});
