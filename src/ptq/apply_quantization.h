#pragma once
// Applies a QuantConfig (quant/quant_config.h) to a whole model: the weight transformation
// of --method, weight quantization, static calibration, activation quantizers at every
// linear input, and the integer engine where it is chosen.
#include <cstdint>
#include <span>
#include <vector>

#include "ptq/awq.h"
#include "ptq/gptq.h"
#include "ptq/omniquant.h"
#include "ptq/rotation.h"
#include "ptq/smoothquant.h"
#include "quant/quant_config.h"

namespace cq {

class Transformer;

// What apply_quantization computed on the calibration data (for reports and checkpoints).
struct QuantizationRecord {
  // The setting the model runs: the config given, or for a quantized checkpoint its stored
  // setting with the activation flags given applied (what reports should describe).
  QuantConfig applied;
  double migration_strength = 0;          // SmoothQuant α used
  std::vector<SmoothingFactors> smoothing;
  AwqResult awq;
  GptqModelResult gptq;                    // --method gptq: the weights are quantized already
  OmniQuantRecord omniquant;               // --method omniquant: what its parameters held
  RotationRecord rotation;  // empty unless config.rotation is "hadamard"
  int64_t calibration_windows = 0;
};

// Transforms the weights as config.method says (SmoothQuant smoothing, AWQ scales and
// clips, both folded exactly), fake-quantizes the weights of every decoder linear layer
// once and installs the activation quantizer at every linear input. Embeddings and lm_head
// stay in full precision. Methods that calibrate use `calibration_tokens` with the
// unquantized model; static activation scales are calibrated after the transformation.
// A quantized checkpoint (stored_quantization(model)) keeps its weights; weight flags are
// refused, activation flags override the stored activation setting, and `--engine int`
// runs its stored codes.
QuantizationRecord apply_quantization(Transformer& model, const QuantConfig& config,
                                      std::span<const int32_t> calibration_tokens = {});
// The same, without quantizing the weights (the weights are transformed only): for
// writing a quantized checkpoint, which quantizes them itself.
QuantizationRecord apply_transformation(Transformer& model, const QuantConfig& config,
                                        std::span<const int32_t> calibration_tokens = {});
void quantize_weights_with_folded_columns(Transformer& model, const Quantizer& weight_quantizer, double alpha,
                                          const std::vector<std::vector<float>>& static_absmax);
// Static activation quantization: per (layer * kInputSites + site) the column maxima of the
// input on the calibration windows, with the model as it is now (transformed, unquantized).
std::vector<std::vector<float>> calibrate_static_activations(Transformer& model, const QuantConfig& config,
                                                             std::span<const int32_t> calibration_tokens);
// Installs the activation quantizer at every linear input; static ones use `static_absmax`
// (from calibrate_static_activations, or read back from a quantized checkpoint).
void install_activation_quantizers(Transformer& model, const QuantConfig& config,
                                   const std::vector<std::vector<float>>& static_absmax);

}  // namespace cq
