import { status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { clientOf } from "../security/support/secure-server.js";
import { spawnServe } from "../support/serve-process.js";
import { decodeOutcome } from "../support/test-server.js";

describe("SIGTERM during decoding", () => {
  // test/server/lifecycle.test.ts covers a Decode that outlasts the grace (cut off with UNAVAILABLE); this one fits in it.
  it("lets the running Decode finish, then exits 0", async () => {
    const serve = spawnServe(["--listen", "127.0.0.1:0", "--shutdown-grace", "30", "--allow-past-context"]);
    const { child, exited } = serve;
    const logged = (msg: string) => serve.stderr.split("\n").find((line) => line.includes(`"msg":"${msg}"`));
    try {
      while (!logged("serving")) {
        if (child.exitCode !== null) throw new Error(serve.stderr);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const client = clientOf(`127.0.0.1:${JSON.parse(logged("serving")!).port}`);
      await client.prefill({ sequenceId: "story", tokenIds: [1, 403, 407, 261] });
      let drainingSeen = -1;
      const ended = await decodeOutcome(client, { sequenceId: "story", maxNewTokens: 1_000, ignoreEos: true }, (_, received) => {
        if (received === 1) child.kill("SIGTERM");
        if (drainingSeen < 0 && logged("draining")) drainingSeen = received;
      });
      expect(ended.code).toBe(status.OK);
      expect(ended.received).toHaveLength(1_000);
      // The server was draining while tokens still came.
      expect(drainingSeen).toBeGreaterThan(0);
      expect(drainingSeen).toBeLessThan(1_000);
      client.close();
      expect(await exited).toBe(0);
      expect(serve.stderr).toContain('"msg":"stopped"');
    } finally {
      child.kill("SIGKILL");
    }
  });
});
