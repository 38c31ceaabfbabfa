/**
 * Thrown when a policy reads the keys of a device-resident cache that have not been read back:
 * policies are pure, so the engine reads them back (Sequence.loadKeys) and runs the policy again.
 * Only policies that score keys pay for the copy.
 */
export class KeysOnDevice extends Error {
  constructor() {
    super("the keys of this cache are on the device and have not been read back for scoring");
  }
}
