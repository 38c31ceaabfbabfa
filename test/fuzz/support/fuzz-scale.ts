/**
 * How hard the fuzz tests push: the CI default runs a few thousand cases in
 * all; KVWARDEN_FUZZ=long (make fuzz-long) runs at least 100,000.
 */
export const LONG = process.env.KVWARDEN_FUZZ === "long";

/** Print how the calls ended (always in long mode; KVWARDEN_FUZZ=report for a CI-sized run). */
export const REPORT = LONG || process.env.KVWARDEN_FUZZ === "report";

/** fast-check runs for a property: `ci` normally, `long` in long mode. */
export function runs(ci: number, long: number): number {
  return LONG ? long : ci;
}

/** Time a property may take: long mode gets what it needs. */
export const PROPERTY_TIMEOUT_MS = LONG ? 3_600_000 : 120_000;
