import { relative } from "node:path";
import { DEFAULT_ENGINE_OPTIONS } from "../engine/engine-options.js";
import { Engine } from "../engine/engine.js";
import { defaultModelFiles } from "../model/default-model.js";
import { loadModelSource, type ModelSource } from "../model/load-model.js";
import { KvwardenServer } from "../sidecar/kvwarden-server.js";
import { KvwardenClient } from "../client/index.js";

/** Stories and reports come back in large messages. */
const CHANNEL_OPTIONS = { "grpc.max_receive_message_length": 64 * 1024 * 1024 };

/** Where the evaluation's requests go. */
export type SidecarChoice =
  | { target: string; token?: string }
  | {
      /** What serve --model takes (a model folder, or a llama2.c checkpoint and tokenizer); absent: stories260K. */
      model?: ModelSource;
      /** Tokens whose queries the in-process server keeps; bounds SnapKV windows and NACL proxy spans. */
      recentQueries?: number;
      threads?: number;
    };

export interface Sidecar {
  client: KvwardenClient;
  /** How it was reached, for the report. */
  description: string;
  close(): Promise<void>;
}

/** Connects to a running sidecar, or starts one on a loopback ephemeral port in this process. */
export async function openSidecar(choice: SidecarChoice): Promise<Sidecar> {
  if ("target" in choice) {
    const client = new KvwardenClient(choice.target, { token: choice.token, channelOptions: CHANNEL_OPTIONS });
    await client.waitForReady(10_000);
    return { client, description: `sidecar at ${choice.target}`, close: async () => client.close() };
  }
  const source = choice.model ?? { files: await defaultModelFiles() };
  const model = await loadModelSource(source, { executionProvider: "cpu", intraOpThreads: choice.threads ?? 1 });
  const engine = new Engine(model, {
    ...DEFAULT_ENGINE_OPTIONS,
    kvBudgetBytes: 256 * 1024 * 1024,
    maxSequenceTokens: model.config.contextLength,
    recentQueryRows: choice.recentQueries ?? DEFAULT_ENGINE_OPTIONS.recentQueryRows,
  });
  const server = new KvwardenServer(engine, { executionProvider: "cpu", version: "eval" });
  const port = await server.listen("127.0.0.1:0");
  const client = new KvwardenClient(`127.0.0.1:${port}`, { channelOptions: CHANNEL_OPTIONS });
  return {
    client,
    description: `in-process sidecar (${relative(process.cwd(), "dir" in source ? source.dir : source.files.modelPath)})`,
    async close() {
      client.close();
      await server.close(1_000);
      await model.runner.release();
    },
  };
}
