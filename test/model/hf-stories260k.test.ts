import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EngineModel } from "../../src/engine/engine.js";
import { LayerCache } from "../../src/kv/layer-cache.js";
import { SlabPool } from "../../src/kv/slab-pool.js";
import { convertHfCheckpoint } from "../../src/model/conversion/convert.js";
import { CONVERTED_FORMAT, readManifest } from "../../src/model/conversion/converted-model.js";
import { convertedCacheDir, loadModelDir } from "../../src/model/load-model.js";
import { argmax } from "../reference/llama-forward.js";
import { loadTestModel, loadTestWeights, MODEL_FILES, REFERENCE_TEXT } from "../support/test-model.js";
import { decodeAll, startTestServer } from "../support/test-server.js";
import { llama2cAsHfConfig, llama2cAsHfTensors, llama2cTokenizerJson, writeHfCheckpoint, writeTokenizer } from "./hf-fixtures.js";

const CPU = { executionProvider: "cpu" as const, intraOpThreads: 1 };
/** A template that writes BOS, then each message's content after a role marker. */
const CHAT_TEMPLATE = "{{ bos_token }}{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ 'assistant:' }}{% endif %}";

/**
 * stories260K written out as a Hugging Face Llama checkpoint (config.json,
 * model.safetensors with q/k permuted for half-split RoPE, tokenizer.json),
 * converted and served: it must behave as the llama2.c checkpoint does.
 */
describe("stories260K as a Hugging Face checkpoint", () => {
  const root = mkdtempSync(join(tmpdir(), "kvwarden-hf-stories-"));
  const hfDir = join(root, "hf");
  const outDir = join(root, "converted");
  const progress: [string, number, number][] = [];
  let hf: EngineModel;
  let llama2c: EngineModel;

  beforeAll(async () => {
    const weights = loadTestWeights();
    writeHfCheckpoint(hfDir, llama2cAsHfConfig(weights.config), llama2cAsHfTensors(weights), { dtype: "F32", shards: 1 });
    writeTokenizer(
      hfDir,
      llama2cTokenizerJson(MODEL_FILES.tokenizerPath, weights.config.vocabSize),
      { bos_token: "<s>", eos_token: "</s>", chat_template: CHAT_TEMPLATE },
      { bos_token_id: 1, eos_token_id: 2 },
    );
    await convertHfCheckpoint(hfDir, outDir, { onTensor: (name, done, total) => progress.push([name, done, total]) });
    [hf, llama2c] = await Promise.all([loadModelDir(outDir, CPU), loadTestModel()]);
  });
  afterAll(async () => {
    await Promise.all([hf?.runner.release(), llama2c?.runner.release()]);
    rmSync(root, { recursive: true, force: true });
  });

  it("converts into a manifest, page-aligned float32 weights, a step graph per KV dtype and the tokenizer files", () => {
    const manifest = readManifest(outDir);
    expect(manifest.config).toMatchObject({ architecture: "LlamaForCausalLM", ropeLayout: "half", ropeScaling: null, kvHeads: 4, contextLength: 512 });
    expect(manifest.source.dtypes).toEqual(["F32"]);
    expect(manifest.tensors.every((t) => t.offset % 4096 === 0)).toBe(true);
    // Tied: the embedding serves as the classifier and is stored once.
    expect(manifest.tensors.map((t) => t.name)).not.toContain("classifier");
    const last = manifest.tensors.at(-1)!;
    expect(statSync(join(outDir, "weights.bin")).size).toBe(last.offset + last.length);
    for (const file of ["step-kv-float32.onnx", "step-kv-float16.onnx", "tokenizer.json", "tokenizer_config.json", "generation_config.json", "config.json"]) {
      expect(existsSync(join(outDir, file)), file).toBe(true);
    }
    // The graph files hold no weights.
    expect(statSync(join(outDir, "step-kv-float32.onnx")).size).toBeLessThan(64 * 1024);
    expect(progress.at(-1)).toEqual(["final_norm", manifest.tensors.length, manifest.tensors.length]);
  });

  it("gives the llama2.c path's logits and attention statistics, chunked prefill and decode", async () => {
    const pool = new SlabPool(16 * 1024 * 1024);
    const { layers, kvHeads, headSize } = llama2c.config;
    const cachesOf = () => Array.from({ length: layers }, () => new LayerCache(pool, { kvHeads, headSize }));
    const caches = { hf: cachesOf(), llama2c: cachesOf() };
    const tokens = [1, ...llama2c.tokenizer.encode("Once upon a time, there was a little dog named Max.")];
    let fed = 0;
    let worstLogit = 0;
    let worstColsum = 0;
    const step = async (chunk: number[]) => {
      const outs = await Promise.all(
        (["hf", "llama2c"] as const).map(async (which) => {
          const model = which === "hf" ? hf : llama2c;
          for (const layer of caches[which]) layer.reserve(chunk.length);
          const out = await model.runner.run({ tokens: chunk, firstPosition: fed, past: caches[which], queryRows: 1, logitRows: chunk.length });
          const stride = kvHeads * chunk.length * headSize;
          caches[which].forEach((layer, l) => layer.append(out.newKeys, out.newValues, l * stride, chunk.length, fed, out.attentionColsums[l]));
          return out;
        }),
      );
      outs[0].logits.forEach((v, i) => (worstLogit = Math.max(worstLogit, Math.abs(v - outs[1].logits[i]))));
      outs[0].attentionColsums.forEach((colsum, l) => colsum.forEach((v, i) => (worstColsum = Math.max(worstColsum, Math.abs(v - outs[1].attentionColsums[l][i])))));
      fed += chunk.length;
      return argmax(outs[1].logits.subarray(outs[1].logits.length - llama2c.config.vocabSize));
    };
    await step(tokens.slice(0, 5));
    let next = await step(tokens.slice(5));
    for (let i = 0; i < 30; i++) next = await step([next]);
    console.log(`stories260K, Hugging Face layout vs llama2.c: max |logit difference| ${worstLogit.toExponential(2)}, max |colsum difference| ${worstColsum.toExponential(2)}`);
    expect(worstLogit).toBeLessThan(1e-4);
    expect(worstColsum).toBeLessThan(1e-4);
  });

  it("reproduces the published greedy sample and tokenizes text as llama2.c does, over gRPC", async () => {
    const t = await startTestServer(hf);
    try {
      await t.client.prefill({ sequenceId: "greedy", tokenIds: [1] });
      const messages = await decodeAll(t.client, { sequenceId: "greedy", maxNewTokens: 200 });
      expect(messages.map((m) => m.text).join("")).toBe(REFERENCE_TEXT);
      const text = await t.client.prefill({ sequenceId: "text", text: "Once upon a time" });
      expect(text.tokenIds).toEqual([1, 403, 407, 261, 378]);
    } finally {
      await t.close();
    }
  });

  it("renders a chat with the model's template and reports the model in Info", async () => {
    const t = await startTestServer(hf);
    try {
      const chat = await t.client.prefill({
        sequenceId: "chat",
        messages: [
          { role: "user", content: "Tell a story." },
          { role: "assistant", content: "Once upon a time" },
        ],
      });
      const rendered = "user: Tell a story.\nassistant: Once upon a time\nassistant:";
      expect(chat.tokenIds).toEqual([1, ...hf.tokenizer.encode(rendered)]);
      const info = await t.client.info();
      expect(info.model).toMatchObject({ name: "hf", architecture: "LlamaForCausalLM", dtype: "float32", kvDtype: "float32", bosTokenId: 1, eosTokenId: 2 });
    } finally {
      await t.close();
    }
  });

  it("serves float16 keys and values from the converted folder's other graph", async () => {
    const model = await loadModelDir(outDir, { ...CPU, kvDtype: "float16" });
    const t = await startTestServer(model);
    try {
      await t.client.prefill({ sequenceId: "greedy", tokenIds: [1] });
      const messages = await decodeAll(t.client, { sequenceId: "greedy", maxNewTokens: 200 });
      expect(messages.map((m) => m.text).join("")).toBe(REFERENCE_TEXT);
      expect((await t.client.info()).model?.kvDtype).toBe("float16");
    } finally {
      await t.close();
      await model.runner.release();
    }
  });

  it("serves a Hugging Face folder directly, converting it once into the user cache", async () => {
    const saved = process.env.XDG_CACHE_HOME;
    process.env.XDG_CACHE_HOME = join(root, "cache");
    try {
      const conversions: string[] = [];
      for (let i = 0; i < 2; i++) {
        const model = await loadModelDir(hfDir, CPU, { onConvert: (dir) => conversions.push(dir) });
        expect(model.config.architecture).toBe("LlamaForCausalLM");
        await model.runner.release();
      }
      expect(conversions).toHaveLength(1);
      expect(conversions[0].startsWith(join(root, "cache", "kvwarden", "converted", "hf-"))).toBe(true);
      expect(readFileSync(join(conversions[0], "weights.bin")).equals(readFileSync(join(outDir, "weights.bin")))).toBe(true);
    } finally {
      if (saved === undefined) delete process.env.XDG_CACHE_HOME;
      else process.env.XDG_CACHE_HOME = saved;
    }
  });

  it("converts a cached folder again when an older kvwarden wrote it in another format", async () => {
    const saved = process.env.XDG_CACHE_HOME;
    process.env.XDG_CACHE_HOME = join(root, "stale-cache");
    try {
      const cached = convertedCacheDir(hfDir);
      await convertHfCheckpoint(hfDir, cached);
      const manifestPath = join(cached, "kvwarden.json");
      writeFileSync(manifestPath, JSON.stringify({ ...JSON.parse(readFileSync(manifestPath, "utf8")), format: 1 }));
      const conversions: string[] = [];
      const model = await loadModelDir(hfDir, CPU, { onConvert: (dir) => conversions.push(dir) });
      await model.runner.release();
      expect(conversions).toEqual([cached]);
      expect(readManifest(cached).format).toBe(CONVERTED_FORMAT);
    } finally {
      if (saved === undefined) delete process.env.XDG_CACHE_HOME;
      else process.env.XDG_CACHE_HOME = saved;
    }
  });

  it("rewrites a step graph file that another kvwarden version left behind", async () => {
    const graphPath = join(outDir, "step-kv-float32.onnx");
    const current = readFileSync(graphPath);
    writeFileSync(graphPath, "not this version's graph");
    const model = await loadModelDir(outDir, CPU);
    await model.runner.release();
    expect(readFileSync(graphPath).equals(current)).toBe(true);
  });
});
