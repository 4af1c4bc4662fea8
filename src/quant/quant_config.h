#pragma once
// A whole-model quantization setting (what `--scheme/--wbits/--abits/...` select) and
// its application to every decoder linear layer (SPEC.md "Settings named in the paper").
#include <cstdint>
#include <span>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "quant/awq.h"
#include "quant/smoothquant.h"

namespace cq {

class Transformer;

struct QuantConfig {
  // What is done to the weights before they are quantized, and the activation default:
  //   crossquant  — nothing (round to nearest); activations CrossQuant unless --act-quant says otherwise
  //   rtn         — nothing (round to nearest); activations per-token unless --act-quant says otherwise
  //   smoothquant — SmoothQuant smoothing (α = migration_strength); per-token activations by default
  //   awq         — AWQ scale and clip search (asymmetric group-wise weights); per-token by default
  std::string method = "crossquant";
  double migration_strength = -1;  // SmoothQuant α; < 0: the family default (OPT 0.5, LLaMA 0.8)
  int awq_grid = 20;
  double awq_max_shrink = 0.5;
  int64_t awq_clip_tokens = 512;
  bool awq_clip = true;
  int weight_bits = 16;                   // 16: weights not quantized
  int activation_bits = 16;               // 16: activations not quantized
  std::string weight_method = "per-channel";  // per-channel | group | crossquant
  int64_t group_size = 128;
  bool weight_asymmetric = false;         // group-wise with zero points (AWQ's setting)
  double weight_alpha = 0.55;             // CrossQuant on weights (α_W)
  std::string activation_method = "crossquant";  // per-token | per-tensor | crossquant | remove-kernel
  double alpha = 0.15;                    // CrossQuant on activations
  double kernel_target = -1.0;            // remove-kernel: share to zero (< 0: per-token's kernel)
  std::string scheme;                     // the preset named, if any (for reports)
  // Static CrossQuant: c_j from calibration instead of the current window (set by --calib).
  bool static_columns = false;
  // Also quantize the inputs of the attention matrix products (SmoothQuant's quantize_bmm_input).
  bool quantize_attention_inputs = false;
  // Static per-tensor (SmoothQuant's static variant): Δ from calibration (set by --calib).
  bool static_tensor_scale = false;
  int64_t calib_samples = 128;
  int64_t calib_seqlen = 512;
  std::string calib_source;               // for reports
  // fake: FP32 GEMMs on fake-quantized values; int: INT8/INT4 GEMMs (quant/integer_linear.h);
  // auto: int where the integer path computes the same model as fake (per-token / per-tensor
  // activations, static CrossQuant), else fake. apply_quantization records the engine it ran.
  std::string engine = "fake";

  bool quantizes_weights() const { return weight_bits < 16; }
  bool needs_calibration() const { return method == "smoothquant" || method == "awq" || static_columns || static_tensor_scale; }
  bool quantizes_activations() const { return activation_bits < 16; }
  // Sets bit widths and weight granularity of w8a8 | w4a8 | w4a8-g128 | w4a4 | w16a16.
  void apply_scheme(const std::string& name);
  void validate() const;
  // e.g. "W8A8 per-channel / crossquant α=0.15".
  std::string describe() const;
  nlohmann::json to_json() const;
};

// What apply_quantization computed on the calibration data (for reports and checkpoints).
struct QuantizationRecord {
  // The setting the model runs: the config given, or for a quantized checkpoint its stored
  // setting with the activation flags given applied (what reports should describe).
  QuantConfig applied;
  double migration_strength = 0;          // SmoothQuant α used
  std::vector<SmoothingFactors> smoothing;
  AwqResult awq;
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
// The weight quantizer the config describes (nullptr when weights stay in full precision).
std::unique_ptr<Quantizer> make_weight_quantizer(const QuantConfig& config);
// Static CrossQuant with per-channel or group weights runs on integer kernels as
// y_ik = r_i Σ_j code_ij · Q(W·diag(f))_kj, f_j = c_j^(1−α): f cannot act inside an integer
// sum, so it is folded into the weight before weight quantization. Both engines compute that
// model; the fake path stores ŵ = Q(W·diag(f)) / f (docs/QUANTIZERS.md, "Static CrossQuant").
bool folds_static_columns(const QuantConfig& config);
// f_j = c_j^(1−α) of static CrossQuant (CrossQuantQuantizer::column_divisors).
std::vector<float> static_column_divisors(double alpha, const std::vector<float>& column_absmax);
// weight (rows × in, row-major) column j multiplied (or divided) by factors[j].
void scale_weight_columns(std::span<float> weight, int64_t in, const std::vector<float>& factors, bool divide);
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
