import { diag, DiagLogLevel } from "@opentelemetry/api";
import { defaultResource, detectResources, envDetector, resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, ConsoleSpanExporter, NodeTracerProvider, type SpanExporter } from "@opentelemetry/sdk-trace-node";
import { jsonLog } from "./json-log.js";

type Env = Readonly<Record<string, string | undefined>>;

export interface Tracing {
  /** Exports what is buffered and stops. */
  shutdown(): Promise<void>;
}

/**
 * The trace exporters the standard OTEL_* variables ask for; empty means
 * tracing stays off. Off unless configured: OTEL_TRACES_EXPORTER names
 * exporters (otlp, console, none), or an OTLP endpoint is set.
 */
export function requestedExporters(env: Env = process.env): string[] {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === "true") return [];
  const named = (env.OTEL_TRACES_EXPORTER ?? "")
    .split(",")
    .map((name) => name.trim().toLowerCase())
    .filter((name) => name !== "");
  if (named.length > 0) return named.includes("none") ? [] : [...new Set(named)];
  return env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ? ["otlp"] : [];
}

/** The OTLP exporter for the configured protocol; it reads endpoint, headers and timeout from the environment itself. */
async function otlpExporter(env: Env): Promise<SpanExporter> {
  const protocol = (env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL ?? "http/protobuf").trim();
  switch (protocol) {
    case "grpc":
      return new (await import("@opentelemetry/exporter-trace-otlp-grpc")).OTLPTraceExporter();
    case "http/protobuf":
      return new (await import("@opentelemetry/exporter-trace-otlp-proto")).OTLPTraceExporter();
    case "http/json":
      return new (await import("@opentelemetry/exporter-trace-otlp-http")).OTLPTraceExporter();
    default:
      throw new Error(`OTEL_EXPORTER_OTLP_PROTOCOL '${protocol}' is not one of grpc, http/protobuf, http/json`);
  }
}

/**
 * Registers a tracer provider exporting as the environment says (sampler from
 * OTEL_TRACES_SAMPLER, default parentbased_always_on, so a caller's sampling
 * decision in `traceparent` holds), or returns undefined when tracing is not
 * configured. Service name kvwarden unless OTEL_SERVICE_NAME says otherwise.
 */
export async function startTracing(serviceVersion: string): Promise<Tracing | undefined> {
  const names = requestedExporters();
  if (names.length === 0) return undefined;
  const exporters: SpanExporter[] = [];
  for (const name of names) {
    if (name === "otlp") exporters.push(await otlpExporter(process.env));
    else if (name === "console") exporters.push(new ConsoleSpanExporter());
    else throw new Error(`OTEL_TRACES_EXPORTER '${name}' is not supported (otlp, console, none)`);
  }
  // Export failures would otherwise vanish silently.
  diag.setLogger(
    {
      error: (message) => jsonLog({ level: "error", msg: `opentelemetry: ${message}` }),
      warn: (message) => jsonLog({ level: "warn", msg: `opentelemetry: ${message}` }),
      info: () => {},
      debug: () => {},
      verbose: () => {},
    },
    DiagLogLevel.WARN,
  );
  const resource = defaultResource()
    .merge(resourceFromAttributes({ "service.name": "kvwarden", "service.version": serviceVersion }))
    .merge(detectResources({ detectors: [envDetector] }));
  const provider = new NodeTracerProvider({ resource, spanProcessors: exporters.map((exporter) => new BatchSpanProcessor(exporter)) });
  provider.register();
  return { shutdown: () => provider.shutdown() };
}
