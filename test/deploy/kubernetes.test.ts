import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { AuthTokens } from "../../src/server/auth-tokens.js";
import { parseManifests, secretFileAt, type Manifest } from "./support/pod.js";
import { flagValues, ROOT, serveFlags } from "./support/serve-flags.js";

const FOLDER = join(ROOT, "deploy/kubernetes");
const manifests: Manifest[] = readdirSync(FOLDER)
  .filter((name) => name.endsWith(".yaml"))
  .flatMap((name) => parseManifests(readFileSync(join(FOLDER, name), "utf8"), name));
const find = (kind: string, name: string) => manifests.find((m) => m.kind === kind && m.metadata?.name === name)!;

describe("deploy/kubernetes", () => {
  let flags: Set<string>;
  beforeAll(async () => {
    flags = await serveFlags();
  });

  it("holds well-formed objects: apiVersion, kind, name, and Deployments whose selectors match their pods", () => {
    expect(manifests.length).toBeGreaterThanOrEqual(3);
    for (const manifest of manifests) {
      expect(manifest.apiVersion).toMatch(/^(v1|apps\/v1)$/);
      expect(manifest.metadata.name).toMatch(/^[a-z0-9-]+$/);
      if (manifest.kind === "Deployment") {
        const { matchLabels } = manifest.spec.selector;
        expect(manifest.spec.template.metadata.labels).toMatchObject(matchLabels);
        for (const container of [...(manifest.spec.template.spec.initContainers ?? []), ...manifest.spec.template.spec.containers]) {
          expect(container.image).toBeTruthy();
          expect(container.resources.requests).toHaveProperty("cpu");
          expect(container.resources.requests).toHaveProperty("memory");
        }
      }
    }
  });

  describe("the backend with kvwarden as a native sidecar", () => {
    const deployment = find("Deployment", "story-backend");
    const pod = deployment.spec.template.spec;
    const sidecar = pod.initContainers.find((c: Manifest) => c.name === "kvwarden");
    const backend = pod.containers[0];
    const args = flagValues(sidecar.args.slice(1));

    it("runs kvwarden as an init container that keeps running (restartPolicy: Always) with flags serve accepts", () => {
      expect(sidecar.restartPolicy).toBe("Always");
      expect(sidecar.args[0]).toBe("serve");
      for (const flag of args.keys()) expect(flags, flag).toContain(flag);
    });

    it("probes kvwarden's TCP health port over gRPC: startup and readiness on the service, liveness on 'liveness'", () => {
      const healthPort = Number(args.get("--health-listen")!.split(":").at(-1));
      expect(args.get("--health-listen")).toMatch(/^0\.0\.0\.0:/); // probes connect to the pod IP
      expect(sidecar.ports).toContainEqual({ name: "grpc-health", containerPort: healthPort });
      expect(sidecar.startupProbe.grpc).toEqual({ port: healthPort, service: "kvwarden.v1.KvCache" });
      expect(sidecar.readinessProbe.grpc).toEqual({ port: healthPort, service: "kvwarden.v1.KvCache" });
      expect(sidecar.livenessProbe.grpc).toEqual({ port: healthPort, service: "liveness" });
      // Time to load the model before the startup probe gives up.
      expect(sidecar.startupProbe.periodSeconds * sidecar.startupProbe.failureThreshold).toBeGreaterThanOrEqual(60);
    });

    it("shares the data-plane socket through an emptyDir both containers mount, in a group both belong to", () => {
      const volume = pod.volumes.find((v: Manifest) => v.emptyDir);
      const mountOf = (container: Manifest) => container.volumeMounts.find((m: Manifest) => m.name === volume.name).mountPath;
      expect(mountOf(sidecar)).toBe(mountOf(backend));
      const listen = args.get("--listen")!;
      expect(listen).toMatch(new RegExp(`^unix:${mountOf(sidecar)}/`));
      expect(backend.env).toContainEqual({ name: "KVWARDEN_ADDRESS", value: listen });
      expect(pod.securityContext.fsGroup).toBeDefined();
    });

    it("exposes metrics where the Prometheus annotations say", () => {
      const metricsPort = Number(args.get("--metrics-listen")!.split(":").at(-1));
      expect(sidecar.ports).toContainEqual({ name: "metrics", containerPort: metricsPort });
      expect(deployment.spec.template.metadata.annotations).toMatchObject({ "prometheus.io/port": String(metricsPort), "prometheus.io/path": "/metrics" });
    });

    it("sends OTLP to the Jaeger service's port for the chosen protocol", () => {
      const env = Object.fromEntries(sidecar.env.filter((e: Manifest) => "value" in e).map((e: Manifest) => [e.name, e.value]));
      const endpoint = new URL(env.OTEL_EXPORTER_OTLP_ENDPOINT);
      const service = find("Service", endpoint.hostname);
      const port = service.spec.ports.find((p: Manifest) => p.port === Number(endpoint.port));
      expect(env.OTEL_EXPORTER_OTLP_PROTOCOL).toBe("grpc");
      expect(port.name).toBe("otlp-grpc");
      expect(env.OTEL_SERVICE_NAME).toBe("kvwarden");
    });

    it("gives the sidecar its drain time inside the pod's grace period", () => {
      expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(Number(args.get("--shutdown-grace")));
    });

    it("requires bearer tokens from a Secret mounted read-only in kvwarden alone, which the server accepts, with the backend's among them", () => {
      const file = secretFileAt(pod, sidecar, args.get("--auth-tokens")!);
      expect(file).toMatchObject({ readOnly: true, defaultMode: 0o440 });
      const secret = find("Secret", file.secretName);
      const tokensFile = secret.stringData[file.key];
      expect(backend.volumeMounts.map((m: Manifest) => m.name)).toEqual(["kvwarden-socket"]);
      // The backend's token comes from a key of that Secret, and names a tenant in the tokens file.
      const ref = backend.env.find((e: Manifest) => e.name === "KVWARDEN_TOKEN").valueFrom.secretKeyRef;
      expect(ref.name).toBe(file.secretName);
      const backendToken = secret.stringData[ref.key];
      const folder = mkdtempSync(join(tmpdir(), "kvwarden-tokens-"));
      try {
        writeFileSync(join(folder, "tokens"), tokensFile);
        const tokens = new AuthTokens(join(folder, "tokens")); // throws on a file the server would refuse
        expect(tokens.tenantOf(backendToken)).toBe("story-backend");
      } finally {
        rmSync(folder, { recursive: true });
      }
      // Placeholders, and marked so: every token in the example says to replace it.
      for (const line of tokensFile.split("\n").filter((l: string) => l.trim() && !l.startsWith("#"))) expect(line).toMatch(/^REPLACE-ME/);
      expect(backendToken).toMatch(/^REPLACE-ME/);
    });

    it("runs the stand-in backend from the chart's demo script", () => {
      expect(backend.args[0]).toBe(readFileSync(join(ROOT, "deploy/helm/kvwarden/files/demo-backend.mjs"), "utf8"));
    });
  });

  it("deploys Jaeger v2 all-in-one listening beyond localhost, with OTLP and UI ports on its service", () => {
    const container = find("Deployment", "jaeger").spec.template.spec.containers[0];
    expect(container.image).toMatch(/jaegertracing\/jaeger:2\.\d+\.\d+$/);
    expect(container.env).toContainEqual({ name: "JAEGER_LISTEN_HOST", value: "0.0.0.0" });
    const service = find("Service", "jaeger");
    expect(service.spec.selector).toEqual({ "app.kubernetes.io/name": "jaeger" });
    expect(service.spec.ports.map((p: Manifest) => p.port).sort((a: number, b: number) => a - b)).toEqual([4317, 4318, 16686]);
    const containerPorts = container.ports.map((p: Manifest) => p.name);
    for (const port of service.spec.ports) expect(containerPorts).toContain(port.targetPort);
  });
});
