/** Every slot of a head that holds `entries` entries: what a head within its budget keeps. */
export function keepAll(entries: number): Int32Array {
  return Int32Array.from({ length: entries }, (_, slot) => slot);
}
