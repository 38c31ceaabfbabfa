import { describe, expect, it, vi } from "vitest";
import { spawnServe } from "../support/serve-process.js";

/** `kvwarden serve --http-listen`: the flag as users give it, in its own process. */
describe("kvwarden serve --http-listen", () => {
  it("serves the OpenAI API beside gRPC, says where, and stops cleanly on SIGTERM", async () => {
    const serve = spawnServe(["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"]);
    try {
      await vi.waitFor(() => expect(serve.stderr).toContain('"msg":"serving"'), { timeout: 60_000, interval: 50 });
      const serving = serve.stderr.split("\n").find((line) => line.includes('"msg":"serving"'))!;
      const { httpPort, httpListen, model } = JSON.parse(serving);
      expect(httpListen).toBe("127.0.0.1:0");
      expect(model).toBe("stories260K");
      const models = await fetch(`http://127.0.0.1:${httpPort}/v1/models`);
      expect((await models.json()).data.map((entry: { id: string }) => entry.id)).toEqual(["stories260K"]);
      const completion = await fetch(`http://127.0.0.1:${httpPort}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "stories260K", prompt: "Once upon a time", max_tokens: 5, temperature: 0 }),
      });
      expect((await completion.json()).choices[0].text).toBe(", there was a little");
      serve.child.kill("SIGTERM");
      expect(await serve.exited).toBe(0);
      // The call's log line names the HTTP method as a gRPC call's names its RPC.
      expect(serve.stderr).toContain('"method":"openai.v1/CreateCompletion","code":"OK"');
    } finally {
      serve.child.kill("SIGKILL");
    }
  });

  it("refuses plain HTTP beside TLS, in one line naming both flags", async () => {
    const serve = spawnServe(["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--tls-cert", "cert.pem", "--tls-key", "key.pem"]);
    expect(await serve.exited).toBe(1);
    expect(JSON.parse(serve.stderr.trim()).msg).toBe("--http-listen serves plain HTTP and cannot be combined with --tls-cert: terminate TLS in front of it (docs/http-api.md)");
  });
});
