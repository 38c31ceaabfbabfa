import type { ModelConfig } from "../config/model-config.js";

/**
 * RoPE's inverse frequency for each rotated pair i < d/2: theta^(-2i/d),
 * rescaled as the config's rope_scaling says (Hugging Face's "linear" and
 * "llama3" rules), rounded to the float32 the graph computes angles in.
 */
export function ropeInverseFrequencies(config: Pick<ModelConfig, "headSize" | "ropeTheta" | "ropeScaling">): Float32Array {
  const { headSize, ropeTheta, ropeScaling } = config;
  const base = Float32Array.from({ length: headSize / 2 }, (_, i) => 1 / Math.pow(ropeTheta, (2 * i) / headSize));
  if (ropeScaling === null) return base;
  if (ropeScaling.type === "linear") return base.map((f) => f / ropeScaling.factor);
  // Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, the band between blended.
  const { factor, lowFreqFactor, highFreqFactor, originalContextLength } = ropeScaling;
  const lowFreqWavelength = originalContextLength / lowFreqFactor;
  const highFreqWavelength = originalContextLength / highFreqFactor;
  return base.map((f) => {
    const wavelength = (2 * Math.PI) / f;
    if (wavelength < highFreqWavelength) return f;
    if (wavelength > lowFreqWavelength) return f / factor;
    const smooth = (originalContextLength / wavelength - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
    return (1 - smooth) * (f / factor) + smooth * f;
  });
}
