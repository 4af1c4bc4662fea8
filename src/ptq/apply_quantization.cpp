// Applying a QuantConfig to a whole model: transformation (SmoothQuant, AWQ), weight
// quantization, static calibration, activation quantizers, the integer engine.
#include "ptq/apply_quantization.h"

#include <algorithm>

#include "model/transformer.h"
#include "ptq/calibration.h"
#include "ptq/integer_linear.h"
#include "ptq/published_artifacts.h"
#include "ptq/omniquant.h"
#include "ptq/omniquant_calibration.h"
#include "quant/method_table.h"
#include "ptq/quantized_checkpoint.h"
#include "quant/quantizer.h"
#include "util/error.h"

namespace cq {

namespace {

CalibrationOptions calibration_options(const QuantConfig& config) {
  CalibrationOptions options;
  options.samples = config.calib_samples;
  options.seqlen = config.calib_seqlen;
  return options;
}

// The windows a calibration reads: --calib-samples, or fewer when the text is shorter.
int64_t calibration_windows_used(const QuantConfig& config, std::span<const int32_t> calibration_tokens) {
  return std::min<int64_t>(config.calib_samples, static_cast<int64_t>(calibration_tokens.size()) / config.calib_seqlen);
}

}  // namespace

QuantizationRecord apply_transformation(Transformer& model, const QuantConfig& config, std::span<const int32_t> calibration_tokens) {
  config.validate();
  QuantizationRecord record;
  if (config.needs_calibration() && calibration_tokens.empty())
    fail("{} needs a calibration text (--calib FILE)", weight_transformation(config.method).needs_calibration
                                                           ? config.method
                                                           : std::string("static activation quantization"));
  // A change of basis first: everything after it (calibration, quantization) sees the rotated model.
  if (config.rotation == "hadamard") record.rotation = rotate_model(model, config.rotation_seed);
  if (config.method == "smoothquant") {
    // Calibrate before anything changes: the statistics describe the original model (or
    // the published act_scales do).
    const CalibrationStats calibration = config.smoothquant_scales.empty()
                                             ? calibrate(model, calibration_tokens, calibration_options(config))
                                             : read_smoothquant_scales(model, config.smoothquant_scales);
    record.calibration_windows = calibration.windows;
    record.migration_strength = config.migration_strength >= 0 ? config.migration_strength : default_migration_strength(model.config());
    record.smoothing = apply_smoothquant(model, calibration, record.migration_strength);
  } else if (config.method == "awq" && !config.awq_results.empty()) {
    record.awq = apply_awq_results(model, config.awq_results);
  } else if (config.method == "awq") {
    if (!config.quantizes_weights()) fail("AWQ searches against quantized weights: set --wbits (or a --scheme) below 16");
    AwqOptions options;
    options.weight = make_weight_quantizer(config)->spec();
    options.grid = config.awq_grid;
    options.max_shrink = config.awq_max_shrink;
    options.clip_tokens = config.awq_clip_tokens;
    options.clip = config.awq_clip;
    record.awq = apply_awq(model, calibration_tokens, calibration_options(config), options);
    record.calibration_windows = calibration_windows_used(config, calibration_tokens);
  } else if (config.method == "omniquant") {
    OmniQuantWeightSetting weights;
    weights.bits = config.weight_bits;
    weights.group_size = config.weight_method == "group" ? config.group_size : 0;
    if (config.omni_params.empty()) {
      // Native calibration: the parameters OmniQuant would learn on these windows, applied as
      // a released file's are (what `cq omniquant-calibrate` writes, bit for bit).
      const OmniQuantCalibrationOptions options = omniquant_calibration_options(config, model.config());
      const OmniQuantParameters parameters = calibrate_omniquant(model, calibration_tokens, options);
      record.calibration_windows = calibration_windows_used(config, calibration_tokens);
      record.omniquant = apply_omniquant(model, parameters, weights, "the calibrated OmniQuant parameters");
    } else {
      const OmniQuantParameters parameters = read_omniquant_parameters(config.omni_params);
      record.omniquant = apply_omniquant(model, parameters, weights, config.omni_params);
    }
  } else if (config.method == "gptq") {
    if (!config.quantizes_weights()) fail("GPTQ quantizes weights: set --wbits (or a --scheme) below 16");
    GptqModelOptions options;
    options.weight = make_weight_quantizer(config)->spec();
    options.solver.dampening = config.gptq_dampening;
    options.solver.act_order = config.gptq_act_order;
    record.gptq = apply_gptq(model, calibration_tokens, calibration_options(config), options);
    record.calibration_windows = record.gptq.calibration_windows;
  }
  return record;
}

std::vector<std::vector<float>> calibrate_static_activations(Transformer& model, const QuantConfig& config,
                                                             std::span<const int32_t> calibration_tokens) {
  if (!config.quantizes_activations() || !(config.static_columns || config.static_tensor_scale)) return {};
  if (calibration_tokens.empty()) fail("static activation quantization needs a calibration text (--calib FILE)");
  return calibrate(model, calibration_tokens, calibration_options(config)).column_absmax;
}

void install_activation_quantizers(Transformer& model, const QuantConfig& config,
                                   const std::vector<std::vector<float>>& static_absmax) {
  if (!config.quantizes_activations()) return;
  QuantizerSpec spec;
  spec.bits = config.activation_bits;
  spec.method = config.activation_method;
  spec.alpha = config.alpha;
  spec.kernel_target = config.kernel_target;
  // OmniQuant's QuantMatMul inputs: q, k (after RoPE) and v, per token and head on rotary
  // families (LLaMA), per token across heads otherwise (OPT), at the activation bits.
  if (config.method == "omniquant") {
    QuantizerSpec products;
    products.bits = config.activation_bits;
    products.method = "per-token-asym";
    model.set_attention_product_quantizer(std::shared_ptr<const Quantizer>(make_quantizer(products)),
                                          model.config().positions == PositionKind::Rotary);
  }
  if (config.quantize_attention_inputs) {
    QuantizerSpec bmm = spec;
    if (bmm.method == "remove-kernel") fail("--quantize-bmm-input needs a quantizing --act-quant, not remove-kernel");
    model.set_attention_input_quantizer(std::shared_ptr<const Quantizer>(make_quantizer(bmm)));
  }
  const bool is_static = config.static_columns || config.static_tensor_scale;
  if (!is_static) {
    model.set_activation_quantizer_everywhere(std::shared_ptr<const Quantizer>(make_quantizer(spec)));
    return;
  }
  const auto sites = static_cast<size_t>(model.config().num_layers * kInputSites);
  if (static_absmax.size() != sites) fail("static activation scales: {} sites given, the model has {}", static_absmax.size(), sites);
  for (int64_t layer = 0; layer < model.config().num_layers; ++layer) {
    for (int site = 0; site < kInputSites; ++site) {
      const std::vector<float>& absmax = static_absmax[static_cast<size_t>(layer * kInputSites + site)];
      std::shared_ptr<const Quantizer> quantizer;
      if (config.static_columns) {
        spec.static_column_absmax = absmax;
        quantizer = make_quantizer(spec);
      } else {
        float tensor_max = 0;
        for (float value : absmax) tensor_max = std::max(tensor_max, value);
        quantizer = make_static_per_tensor_quantizer(config.activation_bits, tensor_max);
      }
      model.set_activation_quantizer(layer, static_cast<InputSite>(site), std::move(quantizer));
    }
  }
}

void quantize_weights_with_folded_columns(Transformer& model, const Quantizer& weight_quantizer, double alpha,
                                          const std::vector<std::vector<float>>& static_absmax) {
  for (LinearLayer& linear : model.linear_layers()) {
    const auto site = static_cast<size_t>(linear.layer * kInputSites + static_cast<int>(linear.site));
    if (site >= static_absmax.size()) fail("static CrossQuant: no calibrated column maxima for linear layer {}", linear.name);
    const std::vector<float> f = static_column_divisors(alpha, static_absmax[site]);
    std::span<float> w = linear.mutable_weight();
    scale_weight_columns(w, linear.in_features, f, /*divide=*/false);
    weight_quantizer.fake_quantize(MatrixView{w.data(), linear.out_features, linear.in_features, linear.in_features}, nullptr);
    scale_weight_columns(w, linear.in_features, f, /*divide=*/true);
  }
}

namespace {

// --engine auto: the integer engine where it computes the same model as the fake engine.
// Dynamic CrossQuant is left on fake: its integer path folds each window's c into the weights
// before quantizing them (a different model from the paper's simulation) and re-quantizes
// them for every decoded token unless calibrated.
std::string resolve_engine(const QuantConfig& config, bool from_stored_codes) {
  if (config.engine != "auto") return config.engine;
  if (config.method == "omniquant") return "fake";  // asymmetric weights and activations: no integer kernels
  const IntegerSupport support = activation_quant_method(config.activation_method).integer_activations;
  const bool exact = support == IntegerSupport::Exact ||
                     (support == IntegerSupport::StaticOnly && (config.static_columns || config.static_tensor_scale));
  return exact && integer_engine_unsupported_reason(config, from_stored_codes).empty() ? "int" : "fake";
}

// Library callers get the CLI's rule too: a quantized lm_head exists only on the integer engine.
void require_engine_for_lm_head(const QuantConfig& config) {
  if (config.quantize_lm_head && config.engine != "int")
    fail("--quantize-lm-head has no effect with --engine {}: only the integer engine quantizes lm_head (add --engine int)",
         config.engine);
}

// A quantized checkpoint: the weights are final (dequantized on load). Activation flags given
// here override the stored activation setting; without them the stored one is used.
QuantConfig apply_stored_quantization(Transformer& model, const StoredQuantization& stored, const QuantConfig& config,
                                      std::span<const int32_t> calibration_tokens) {
  if (config.rotation != "none")
    fail("{} is already quantized ({}): --rotate acts before the weights are quantized; give it to cq quantize", model.directory().string(),
         stored.config.describe());
  if (config.quantizes_weights() || weight_transformation(config.method).needs_calibration)
    fail("{} is already quantized ({}); drop the weight flags (--scheme/--wbits/--method), activation flags may be given",
         model.directory().string(), stored.config.describe());
  if (stored.config.method == "omniquant" && config.engine == "int")
    fail("--engine int: {} holds OmniQuant's weights (asymmetric, zero points not clamped to the codes) and runs "
         "per-token asymmetric activations, which have no integer kernels; use --engine fake (auto picks it)",
         model.directory().string());
  if (stored.served_as_values && config.engine == "int")
    fail("--engine int runs cq's own quantized checkpoints; {} (compressed-tensors) runs on --engine fake",
         model.directory().string());
  QuantConfig effective = stored.config;
  effective.engine = stored.served_as_values ? "fake" : config.engine;
  effective.quantize_lm_head = config.quantize_lm_head;
  std::vector<std::vector<float>> static_absmax;
  if (config.quantizes_activations()) {
    effective.activation_bits = config.activation_bits;
    effective.activation_method = config.activation_method;
    effective.alpha = config.alpha;
    effective.kernel_target = config.kernel_target;
    effective.static_columns = config.static_columns;
    effective.static_tensor_scale = config.static_tensor_scale;
    effective.quantize_attention_inputs = config.quantize_attention_inputs;
    effective.calib_source = config.calib_source;
    effective.calib_samples = config.calib_samples;
    effective.calib_seqlen = config.calib_seqlen;
    effective.validate();
    static_absmax = calibrate_static_activations(model, effective, calibration_tokens);
  } else {
    static_absmax = read_static_absmax(model);
  }
  effective.engine = resolve_engine(effective, true);
  require_engine_for_lm_head(effective);
  if (effective.engine == "int") install_integer_backends(model, effective, static_absmax);
  install_activation_quantizers(model, effective, static_absmax);
  return effective;
}

}  // namespace

QuantizationRecord apply_quantization(Transformer& model, const QuantConfig& requested,
                                      std::span<const int32_t> calibration_tokens) {
  if (const StoredQuantization* stored = stored_quantization(model)) {
    QuantizationRecord record;
    record.applied = apply_stored_quantization(model, *stored, requested, calibration_tokens);
    return record;
  }
  QuantConfig config = requested;
  config.engine = resolve_engine(requested, false);
  require_engine_for_lm_head(config);
  // Before any calibration: validate() leaves the engine of unquantized weights to here.
  if (config.engine == "int")
    if (const std::string reason = integer_engine_unsupported_reason(config); !reason.empty()) fail("--engine int: {}", reason);
  QuantizationRecord record = apply_transformation(model, config, calibration_tokens);
  // Static scales describe the transformed, still unquantized model (GPTQ: its quantized weights).
  const auto static_absmax = calibrate_static_activations(model, config, calibration_tokens);
  // The integer engine packs the weights before they are fake-quantized (static CrossQuant
  // folds c^(1−α) into them first); GPTQ's are on their grids already.
  if (config.engine == "int") install_integer_backends(model, config, static_absmax, &record.gptq);
  if (config.method == "gptq" || config.method == "omniquant") {
    // Done by apply_gptq / apply_omniquant (LWC): rounding again to nearest would change them.
  } else if (const auto quantizer = make_weight_quantizer(config)) {
    if (folds_static_columns(config)) quantize_weights_with_folded_columns(model, *quantizer, config.alpha, static_absmax);
    else model.quantize_weights(*quantizer);
  }
  install_activation_quantizers(model, config, static_absmax);
  record.applied = config;
  return record;
}

}  // namespace cq
