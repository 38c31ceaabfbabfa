import type { ModelConfig, RopeScaling } from "../config/model-config.js";

export const SUPPORTED_ARCHITECTURES = ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"] as const;
type Architecture = (typeof SUPPORTED_ARCHITECTURES)[number];

/** What a Hugging Face config.json says about a model kvwarden can run. */
export interface HfModelSpec {
  config: ModelConfig;
  /** lm_head is the embedding (tie_word_embeddings). */
  tiedEmbeddings: boolean;
  /** q_proj, k_proj and v_proj have biases (Qwen2, or Llama's attention_bias). */
  qkvBias: boolean;
  /** o_proj has a bias (Llama's attention_bias). */
  outputBias: boolean;
}

/** A config.json that kvwarden cannot run; the message names the field. */
export class UnsupportedConfigError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`config.json: ${field} ${message}`);
  }
}

type Json = Record<string, unknown>;

/** Reads typed fields of a JSON object, naming the field when one is missing or wrong. */
function fields(raw: Json, prefix = "") {
  const at = (key: string) => prefix + key;
  const present = (key: string) => raw[key] !== undefined && raw[key] !== null;
  const number = (key: string, fallback?: number): number => {
    if (!present(key)) {
      if (fallback === undefined) throw new UnsupportedConfigError(at(key), "is missing");
      return fallback;
    }
    const value = raw[key];
    if (typeof value !== "number" || !Number.isFinite(value)) throw new UnsupportedConfigError(at(key), `must be a number, got ${JSON.stringify(value)}`);
    return value;
  };
  const count = (key: string, fallback?: number): number => {
    const value = number(key, fallback);
    if (!Number.isInteger(value) || value < 1) throw new UnsupportedConfigError(at(key), `must be a positive integer, got ${value}`);
    return value;
  };
  const flag = (key: string, fallback: boolean): boolean => {
    if (!present(key)) return fallback;
    if (typeof raw[key] !== "boolean") throw new UnsupportedConfigError(at(key), `must be true or false, got ${JSON.stringify(raw[key])}`);
    return raw[key] as boolean;
  };
  return { present, number, count, flag };
}

/**
 * Checks a config.json of a LlamaForCausalLM, MistralForCausalLM or
 * Qwen2ForCausalLM checkpoint and maps it to kvwarden's ModelConfig. Anything
 * that would change the computation in a way the step graph does not
 * implement is refused by name rather than silently ignored.
 */
export function parseHfConfig(raw: Json, name: string): HfModelSpec {
  const architectures = raw.architectures;
  if (!Array.isArray(architectures) || architectures.length !== 1 || !(SUPPORTED_ARCHITECTURES as readonly unknown[]).includes(architectures[0])) {
    throw new UnsupportedConfigError("architectures", `is ${JSON.stringify(architectures)}; kvwarden runs ${SUPPORTED_ARCHITECTURES.join(", ")}`);
  }
  const architecture = architectures[0] as Architecture;
  const f = fields(raw);
  if (f.present("quantization_config")) throw new UnsupportedConfigError("quantization_config", "is set: quantized checkpoints are not supported");
  const activation = raw.hidden_act ?? "silu";
  if (activation !== "silu") throw new UnsupportedConfigError("hidden_act", `is ${JSON.stringify(activation)}; only "silu" (SwiGLU) is supported`);
  if (f.flag("mlp_bias", false)) throw new UnsupportedConfigError("mlp_bias", "is true; MLP biases are not supported");
  if (f.number("partial_rotary_factor", 1) !== 1) throw new UnsupportedConfigError("partial_rotary_factor", "is not 1; partial RoPE is not supported");

  const dim = f.count("hidden_size");
  const heads = f.count("num_attention_heads");
  const kvHeads = f.count("num_key_value_heads", heads);
  if (heads % kvHeads !== 0) throw new UnsupportedConfigError("num_key_value_heads", `(${kvHeads}) must divide num_attention_heads (${heads})`);
  if (!f.present("head_dim") && dim % heads !== 0) {
    throw new UnsupportedConfigError("num_attention_heads", `(${heads}) must divide hidden_size (${dim}) when head_dim is not given`);
  }
  const headSize = f.count("head_dim", dim / heads);
  if (headSize % 2 !== 0) throw new UnsupportedConfigError("head_dim", `(${headSize}) must be even for RoPE`);

  let contextLength = f.count("max_position_embeddings");
  if (architecture === "Qwen2ForCausalLM" && f.flag("use_sliding_window", false)) {
    throw new UnsupportedConfigError("use_sliding_window", "is true; sliding-window attention is not supported");
  }
  if (architecture === "MistralForCausalLM" && f.present("sliding_window")) {
    // Within the window, sliding-window attention is plain causal attention: serve only that far.
    contextLength = Math.min(contextLength, f.count("sliding_window"));
  }

  const { ropeTheta, ropeScaling } = ropeOf(raw);
  const attentionBias = architecture === "LlamaForCausalLM" && f.flag("attention_bias", false);
  return {
    config: {
      name,
      architecture,
      dim,
      hiddenDim: f.count("intermediate_size"),
      layers: f.count("num_hidden_layers"),
      heads,
      kvHeads,
      headSize,
      vocabSize: f.count("vocab_size"),
      contextLength,
      ropeTheta,
      ropeLayout: "half",
      ropeScaling,
      normEps: f.number("rms_norm_eps", 1e-6),
    },
    tiedEmbeddings: f.flag("tie_word_embeddings", false),
    qkvBias: architecture === "Qwen2ForCausalLM" || attentionBias,
    outputBias: attentionBias,
  };
}

/** rope_theta and rope_scaling, or (newer transformers) the same in rope_parameters. */
function ropeOf(raw: Json): { ropeTheta: number; ropeScaling: RopeScaling | null } {
  const parameters = raw.rope_parameters as Json | undefined;
  const [scaling, prefix] = parameters ? [parameters, "rope_parameters."] : [raw.rope_scaling as Json | null | undefined, "rope_scaling."];
  const ropeTheta = fields(parameters ?? raw, parameters ? prefix : "").number("rope_theta", 10000);
  if (!scaling) return { ropeTheta, ropeScaling: null };
  const s = fields(scaling, prefix);
  const type = scaling.rope_type ?? scaling.type ?? "default";
  if (type === "default") return { ropeTheta, ropeScaling: null };
  if (type === "linear") return { ropeTheta, ropeScaling: { type, factor: s.number("factor") } };
  if (type === "llama3") {
    return {
      ropeTheta,
      ropeScaling: {
        type,
        factor: s.number("factor"),
        lowFreqFactor: s.number("low_freq_factor"),
        highFreqFactor: s.number("high_freq_factor"),
        originalContextLength: s.count("original_max_position_embeddings"),
      },
    };
  }
  const key = scaling.rope_type === undefined ? "type" : "rope_type";
  throw new UnsupportedConfigError(`${prefix}${key}`, `is ${JSON.stringify(type)}; supported: "default", "linear", "llama3"`);
}
