import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { Engine } from "../../src/engine/engine.js";
import { KvwardenMetrics } from "../../src/telemetry/metrics.js";
import { MetricsServer } from "../../src/telemetry/metrics-server.js";
import { loadTestModel } from "../support/test-model.js";
import { DEFAULT_TEST_OPTIONS } from "../support/test-server.js";
import { parseManifests, type Manifest } from "./support/pod.js";
import { flagValues, ROOT, serveFlags } from "./support/serve-flags.js";

const FILE = "deploy/gateway/inference-pool.yaml";
const manifests: Manifest[] = parseManifests(readFileSync(join(ROOT, FILE), "utf8"), FILE);
const find = (kind: string, name: string) => {
  const found = manifests.find((m) => m.kind === kind && m.metadata?.name === name);
  if (!found) throw new Error(`${FILE} has no ${kind} ${name}`);
  return found;
};
const port = (address: string) => Number(address.split(":").at(-1));

/** Metric families of a Prometheus text exposition: type, and the label sets of their samples. */
function families(text: string): Map<string, { type: string; samples: Map<string, string>[] }> {
  const found = new Map<string, { type: string; samples: Map<string, string>[] }>();
  for (const line of text.split("\n")) {
    const declared = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (declared) found.set(declared[1], { type: declared[2], samples: [] });
    const sample = /^([^#\s{]+)(?:\{(.*)\})? /.exec(line);
    if (sample && found.has(sample[1])) found.get(sample[1])!.samples.push(new Map([...(sample[2] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]])));
  }
  return found;
}

describe(FILE, () => {
  const pool = find("InferencePool", "kvwarden-pool");
  const servers = find("Deployment", "kvwarden-pool");
  const kvwarden = servers.spec.template.spec.containers.find((c: Manifest) => c.name === "kvwarden");
  const args = flagValues(kvwarden.args.slice(1));
  const epp = find("Deployment", "kvwarden-pool-epp");
  const eppContainer = epp.spec.template.spec.containers[0];
  const eppArgs = flagValues(eppContainer.args);
  const eppArg = (flag: string) => eppContainer.args[eppContainer.args.indexOf(flag) + 1] as string;

  it("holds well-formed objects of the Inference Extension, Gateway API and Kubernetes, Deployments whose selectors match their pods", () => {
    for (const manifest of manifests) {
      expect(manifest.apiVersion).toMatch(/^(v1|apps\/v1|inference\.networking\.k8s\.io\/v1|gateway\.networking\.k8s\.io\/v1|rbac\.authorization\.k8s\.io\/v1)$/);
      expect(manifest.metadata.name).toMatch(/^[a-z0-9-]+$/);
      if (manifest.kind !== "Deployment") continue;
      expect(manifest.spec.template.metadata.labels).toMatchObject(manifest.spec.selector.matchLabels);
      for (const container of manifest.spec.template.spec.containers) {
        expect(container.image).toBeTruthy();
        expect(container.resources.requests).toHaveProperty("cpu");
        expect(container.resources.requests).toHaveProperty("memory");
      }
    }
    expect(manifests.map((m) => m.kind).sort()).toEqual(["Deployment", "Deployment", "HTTPRoute", "InferencePool", "Role", "RoleBinding", "Service", "ServiceAccount"]);
  });

  it("runs kvwarden with flags serve accepts, serving the OpenAI HTTP API on the pool's target port and queueing calls", async () => {
    expect(kvwarden.args[0]).toBe("serve");
    const flags = await serveFlags();
    for (const flag of args.keys()) expect(flags, flag).toContain(flag);
    expect(args.get("--http-listen")).toMatch(/^0\.0\.0\.0:/); // the gateway reaches the pod IP
    expect(pool.spec.targetPorts).toEqual([{ number: port(args.get("--http-listen")!) }]);
    expect(kvwarden.ports).toContainEqual({ name: "http", containerPort: port(args.get("--http-listen")!) });
    expect(Number(args.get("--max-queue"))).toBeGreaterThan(0);
    const healthPort = port(args.get("--health-listen")!);
    expect(kvwarden.readinessProbe.grpc).toEqual({ port: healthPort, service: "kvwarden.v1.KvCache" });
    expect(kvwarden.startupProbe.periodSeconds * kvwarden.startupProbe.failureThreshold).toBeGreaterThanOrEqual(60);
  });

  it("selects the kvwarden pods in the pool, routes /v1/ to the pool, and points the pool at the EPP's service and gRPC port", () => {
    expect(servers.spec.template.metadata.labels).toMatchObject(pool.spec.selector.matchLabels);
    expect(epp.spec.template.metadata.labels).not.toMatchObject(pool.spec.selector.matchLabels);
    const route = find("HTTPRoute", "kvwarden-pool");
    expect(route.spec.rules[0].backendRefs).toEqual([{ group: "inference.networking.k8s.io", kind: "InferencePool", name: pool.metadata.name }]);
    expect(route.spec.rules[0].matches[0].path).toEqual({ type: "PathPrefix", value: "/v1/" });
    const { name, kind, port: pickerPort } = pool.spec.endpointPickerRef;
    expect(kind).toBe("Service");
    const service = find("Service", name);
    expect(epp.spec.template.metadata.labels).toMatchObject(service.spec.selector);
    const servicePort = service.spec.ports.find((p: Manifest) => p.port === pickerPort.number);
    expect(servicePort.targetPort).toBe(Number(eppArg("--grpc-port")));
    expect(eppArg("--pool-name")).toBe(pool.metadata.name);
  });

  it("lets the EPP read the pool and its pods through a Role bound to its service account", () => {
    const binding = find("RoleBinding", "kvwarden-pool-epp");
    expect(binding.subjects).toEqual([{ kind: "ServiceAccount", name: epp.spec.template.spec.serviceAccountName }]);
    const role = find(binding.roleRef.kind, binding.roleRef.name);
    const readable = role.rules.flatMap((rule: Manifest) => (rule.verbs.includes("watch") ? rule.resources : []));
    expect(readable).toEqual(expect.arrayContaining(["inferencepools", "pods"]));
  });

  describe("the EPP's metric flags, against what a real kvwarden serves", () => {
    let exposition: ReturnType<typeof families>;
    beforeAll(async () => {
      const engine = new Engine(await loadTestModel(), { ...DEFAULT_TEST_OPTIONS, maxQueue: 4 });
      const metrics = new KvwardenMetrics(() => ({ ...engine.stats(), sequenceCount: engine.sequenceCount, requestsWaiting: engine.requestsWaiting, cacheConfig: engine.cacheConfig }));
      const endpoint = new MetricsServer(metrics.registry);
      try {
        const url = `http://127.0.0.1:${await endpoint.listen("127.0.0.1:0")}${eppArg("--model-server-metrics-path")}`;
        exposition = families(await (await fetch(url)).text());
      } finally {
        await endpoint.close();
        engine.close();
      }
    });

    it("scrapes kvwarden's metrics port and path", () => {
      expect(Number(eppArg("--model-server-metrics-port"))).toBe(port(args.get("--metrics-listen")!));
      expect(eppArg("--model-server-metrics-path")).toBe("/metrics");
    });

    it("names gauges kvwarden exports for the waiting and running requests and the KV usage", () => {
      for (const flag of ["--total-queued-requests-metric", "--total-running-requests-metric", "--kv-cache-usage-percentage-metric"]) {
        expect(exposition.get(eppArg(flag))?.type, `${flag} ${eppArg(flag)}`).toBe("gauge");
        expect(exposition.get(eppArg(flag))!.samples).toHaveLength(1);
      }
    });

    it("names the info gauge whose block_size and num_gpu_blocks labels are whole numbers, and turns the LoRA metric off", () => {
      const info = exposition.get(eppArg("--cache-info-metric"))!;
      expect(info.type).toBe("gauge");
      const [labels] = info.samples;
      expect(labels.get("block_size")).toMatch(/^[1-9]\d*$/);
      expect(labels.get("num_gpu_blocks")).toMatch(/^[1-9]\d*$/);
      expect(eppArgs.has("--lora-info-metric")).toBe(true);
      expect(eppArg("--lora-info-metric")).toBe("");
    });
  });
});
