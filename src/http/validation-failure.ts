import type { FastifyRequest } from "fastify";
import { InvalidField } from "./openai-error.js";

/**
 * Throws the request's schema failure (kept by Fastify's attachValidation so
 * that authentication runs first) as a 400 naming the field.
 */
export function throwIfInvalid(request: FastifyRequest): void {
  const failure = request.validationError;
  if (!failure) return;
  const [first] = failure.validation;
  const path = first.instancePath.slice(1).replace(/\//g, ".");
  const params = first.params as { additionalProperty?: string; missingProperty?: string };
  if (params.additionalProperty) throw new InvalidField(params.additionalProperty, `unknown field '${params.additionalProperty}'${path ? ` in ${path}` : ""}: this server does not support it`);
  if (params.missingProperty) {
    const param = path ? `${path}.${params.missingProperty}` : params.missingProperty;
    throw new InvalidField(param, `'${param}' is required`);
  }
  const param = path || failure.validationContext || "body";
  throw new InvalidField(param, `${param} ${first.message ?? "is not valid"}`);
}
