import { readFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import type { ModelConfig } from "../config/model-config.js";
import type { LayerWeights, WeightSource } from "./model-weights.js";
import { parseHfConfig, type HfModelSpec } from "./hf-config.js";
import { SafetensorsCheckpoint } from "./safetensors.js";

/** Tensor names of the Llama family in transformers' layout. */
const layerPrefix = (l: number) => `model.layers.${l}`;
const NAMES = {
  embedding: "model.embed_tokens.weight",
  finalNorm: "model.norm.weight",
  classifier: "lm_head.weight",
};

/**
 * A Hugging Face Llama-family checkpoint (config.json and safetensors) as a
 * weight source: tensors are read from disk one at a time and widened to
 * float32. Projections are [out, in] like kvwarden's own layout, so nothing
 * is reordered; RoPE's half-split layout is handled by the graph.
 */
export class HfCheckpoint implements WeightSource {
  readonly config: ModelConfig;
  readonly tiedClassifier: boolean;

  private constructor(
    readonly spec: HfModelSpec,
    readonly tensors: SafetensorsCheckpoint,
  ) {
    this.config = spec.config;
    this.tiedClassifier = spec.tiedEmbeddings;
  }

  /** Opens `dir`, checking that every tensor the config implies is there before anything is read. */
  static open(dir: string): HfCheckpoint {
    const raw = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
    const checkpoint = new HfCheckpoint(parseHfConfig(raw, basename(resolve(dir))), SafetensorsCheckpoint.open(dir));
    for (const name of checkpoint.tensorNames()) checkpoint.tensors.info(name);
    return checkpoint;
  }

  embedding(): Float32Array {
    return this.tensors.read(NAMES.embedding, [this.config.vocabSize, this.config.dim]);
  }

  layer(l: number): LayerWeights {
    const { dim, hiddenDim, heads, kvHeads, headSize } = this.config;
    const { qkvBias, outputBias } = this.spec;
    const read = (name: string, shape: number[]) => this.tensors.read(`${layerPrefix(l)}.${name}`, shape);
    const attention = (projection: string, rows: number) => read(`self_attn.${projection}.weight`, [rows, projection === "o_proj" ? heads * headSize : dim]);
    return {
      attnNorm: read("input_layernorm.weight", [dim]),
      wq: attention("q_proj", heads * headSize),
      wk: attention("k_proj", kvHeads * headSize),
      wv: attention("v_proj", kvHeads * headSize),
      wo: attention("o_proj", dim),
      ffnNorm: read("post_attention_layernorm.weight", [dim]),
      w1: read("mlp.gate_proj.weight", [hiddenDim, dim]),
      w2: read("mlp.down_proj.weight", [dim, hiddenDim]),
      w3: read("mlp.up_proj.weight", [hiddenDim, dim]),
      ...(qkvBias && {
        bq: read("self_attn.q_proj.bias", [heads * headSize]),
        bk: read("self_attn.k_proj.bias", [kvHeads * headSize]),
        bv: read("self_attn.v_proj.bias", [kvHeads * headSize]),
      }),
      ...(outputBias && { bo: read("self_attn.o_proj.bias", [dim]) }),
    };
  }

  finalNorm(): Float32Array {
    return this.tensors.read(NAMES.finalNorm, [this.config.dim]);
  }

  classifier(): Float32Array {
    return this.tensors.read(NAMES.classifier, [this.config.vocabSize, this.config.dim]);
  }

  /** Every tensor the config implies. */
  private tensorNames(): string[] {
    const perLayer = [
      "input_layernorm.weight",
      "post_attention_layernorm.weight",
      ...["q_proj", "k_proj", "v_proj", "o_proj"].map((p) => `self_attn.${p}.weight`),
      ...["gate_proj", "up_proj", "down_proj"].map((p) => `mlp.${p}.weight`),
      ...(this.spec.qkvBias ? ["q_proj", "k_proj", "v_proj"].map((p) => `self_attn.${p}.bias`) : []),
      ...(this.spec.outputBias ? ["self_attn.o_proj.bias"] : []),
    ];
    return [
      NAMES.embedding,
      NAMES.finalNorm,
      ...(this.tiedClassifier ? [] : [NAMES.classifier]),
      ...Array.from({ length: this.config.layers }, (_, l) => perLayer.map((name) => `${layerPrefix(l)}.${name}`)).flat(),
    ];
  }
}
