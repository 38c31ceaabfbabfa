import { trace } from "@opentelemetry/api";

/**
 * kvwarden's tracer. Until a tracer provider is registered (see tracing.ts)
 * this is the API's no-op tracer, so spans cost almost nothing when tracing is off.
 */
export const tracer = trace.getTracer("kvwarden");
