import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startSecureServer } from "../../security/support/secure-server.js";
import { loadTestModel } from "../../support/test-model.js";

/** The one token the server accepts (tenant "clients"). */
export const CLIENT_TOKEN = "installed-client-0123456789abcdef";

/** A real kvwarden server on an ephemeral loopback port that requires CLIENT_TOKEN, as --auth-tokens would. */
export async function startTokenProtectedServer(): Promise<{ address: string; close(): Promise<void> }> {
  const folder = await mkdtemp(join(tmpdir(), "kvwarden-tokens-"));
  const sidecar = await startSecureServer(await loadTestModel(), { tokens: { path: join(folder, "tokens"), text: `${CLIENT_TOKEN} clients\n` } });
  return {
    address: sidecar.address,
    async close() {
      await sidecar.close();
      await rm(folder, { recursive: true, force: true });
    },
  };
}
