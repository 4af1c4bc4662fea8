#pragma once
// A whole-model quantization setting (what `--scheme/--wbits/--abits/...` select), as data:
// the presets of --scheme and --method, validation and description. Applying it to a model
// is ptq/apply_quantization.h (SPEC.md "Settings named in the paper").
#include <cstdint>
#include <span>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "quant/quantizer.h"

namespace cq {


// The presets of --scheme: bit widths and weight granularity (SPEC.md "Settings named in the paper").
struct SchemePreset {
  std::string_view name;
  int weight_bits, activation_bits;
  std::string_view weight_method;
  int64_t group_size;  // group-wise only
};
std::span<const SchemePreset> scheme_presets();
std::string scheme_names(std::string_view separator = " | ");

// The weight transformations of --method and the defaults each brings when the flags that
// would set them are absent (QuantConfig resolution applies them; docs/BASELINES.md).
struct WeightTransformation {
  std::string_view name;
  std::string_view summary;
  std::string_view default_activation;  // --act-quant when not given
  std::string_view default_scheme;      // --scheme when no bit width or granularity is given ("": none)
  bool needs_calibration;               // needs --calib
  bool asymmetric_groups;               // group-wise weights get zero points (AWQ's setting)
};
std::span<const WeightTransformation> weight_transformations();
// The row named `name`; throws cq::Error naming --method and the allowed values.
const WeightTransformation& weight_transformation(std::string_view name);
const WeightTransformation* find_weight_transformation(std::string_view name);  // nullptr if unknown
std::string weight_transformation_names(std::string_view separator = " | ");
// "smoothquant, awq": the transformations that need a calibration text.
std::string calibrated_transformation_names();

// OmniQuant calibration's defaults: --epochs 20 in every one of its scripts, --lwc_lr 1e-2 and
// --let_lr 5e-3 from its main.py (docs/BASELINES.md, "OmniQuant calibration").
inline constexpr int64_t kOmniQuantDefaultEpochs = 20;
inline constexpr double kOmniQuantDefaultLwcLr = 1e-2;
inline constexpr double kOmniQuantDefaultLetLr = 5e-3;

inline constexpr int64_t kMaxRotationSeed = (int64_t{1} << 53) - 1;

struct QuantConfig {
  // What is done to the weights before they are quantized, and the activation default:
  //   crossquant  — nothing (round to nearest); activations CrossQuant unless --act-quant says otherwise
  //   rtn         — nothing (round to nearest); activations per-token unless --act-quant says otherwise
  //   smoothquant — SmoothQuant smoothing (α = migration_strength); per-token activations by default
  //   awq         — AWQ scale and clip search (asymmetric group-wise weights); per-token by default
  //   gptq        — GPTQ rounding with calibration Hessians (ptq/gptq.h); per-token by default
  //   omniquant   — OmniQuant's learned LET folded and LWC-clipped asymmetric weights (ptq/omniquant.h);
  //                 OmniQuant's per-token asymmetric activations (and q/k/v) by default
  std::string method = "crossquant";
  double migration_strength = -1;  // SmoothQuant α; < 0: the family default (OPT 0.5, LLaMA 0.8)
  int awq_grid = 20;
  double awq_max_shrink = 0.5;
  int64_t awq_clip_tokens = 512;
  bool awq_clip = true;
  // Published calibration results used instead of calibrating (ptq/published_artifacts.h):
  // SmoothQuant's act_scales (--smoothquant-scales) and llm-awq's search results (--awq-results).
  std::string smoothquant_scales;
  std::string awq_results;
  double gptq_dampening = 0.01;           // GPTQ: λ = dampening · mean diag(H)
  bool gptq_act_order = false;            // GPTQ: columns in order of decreasing H_jj
  // OmniQuant: its released parameters (omni_parameters.pth, ptq/omniquant.h), or, without
  // them, calibrated on --calib (ptq/omniquant_calibration.h) with these AdamW epochs per block
  // and learning rates (OmniQuant's main.py defaults, the epochs of its scripts).
  std::string omni_params;
  int64_t omni_epochs = kOmniQuantDefaultEpochs;
  double omni_lwc_lr = kOmniQuantDefaultLwcLr;
  double omni_let_lr = kOmniQuantDefaultLetLr;
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
  // fake: FP32 GEMMs on fake-quantized values; int: INT8/INT4 GEMMs (ptq/integer_linear.h);
  // auto: int where the integer path computes the same model as fake (per-token / per-tensor
  // activations, static CrossQuant), else fake. apply_quantization records the engine it ran.
  std::string engine = "fake";
  // none | hadamard: QuaRot-style rotation of the residual stream, per head and of down_proj's
  // input, folded into the weights before anything else (ptq/rotation.h); the seed draws Q's signs.
  std::string rotation = "none";
  uint64_t rotation_seed = 0;  // at most kMaxRotationSeed (stored exactly as a JSON number)
  // --quantize-lm-head: the integer engine also runs lm_head as W8 per-channel / A8 per-token
  // (off by default: the paper keeps lm_head in full precision). Only with engine "int".
  bool quantize_lm_head = false;

  bool quantizes_weights() const { return weight_bits < 16; }
  bool needs_calibration() const;
  // The published results file that replaces --method's calibration ("" when none applies):
  // --smoothquant-scales, --awq-results, --omni-params.
  const std::string& method_results_file() const;
  bool quantizes_activations() const { return activation_bits < 16; }
  // Sets bit widths and weight granularity of a --scheme preset (scheme_names()).
  void apply_scheme(const std::string& name);
  void validate() const;
  // e.g. "W8A8 per-channel / crossquant α=0.15".
  std::string describe() const;
  // "OmniQuant + " (released parameters) or "OmniQuant (20 epochs, lr LWC 0.01 / LET 0.005) + ".
  std::string omniquant_label() const;
  nlohmann::json to_json() const;
};

// A label's weight-method part followed by the rotation's: ("GPTQ + ", "hadamard") gives
// "GPTQ + Hadamard + ", ("", "none") "". The one order of QuantConfig::describe() and of
// cq sweep's table rows, progress lines and bar labels.
std::string label_with_rotation(const std::string& method_part, const std::string& rotation);

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
// Why the integer engine cannot run `config` (empty when it can). from_stored_codes: the
// weights are a quantized checkpoint's codes (no per-window re-quantization possible).
std::string integer_engine_unsupported_reason(const QuantConfig& config, bool from_stored_codes = false);

}  // namespace cq
