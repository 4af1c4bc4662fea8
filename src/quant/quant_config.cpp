#include "quant/quant_config.h"

#include <nlohmann/json.hpp>

#include "model/transformer.h"
#include "quant/calibration.h"
#include "quant/crossquant.h"
#include "quant/integer_linear.h"
#include "quant/quantized_checkpoint.h"
#include "quant/quantizer.h"
#include "util/error.h"

#include <algorithm>

namespace cq {

void QuantConfig::apply_scheme(const std::string& name) {
  scheme = name;
  weight_method = "per-channel";
  if (name == "w8a8") weight_bits = 8, activation_bits = 8;
  else if (name == "w4a8") weight_bits = 4, activation_bits = 8;
  else if (name == "w4a8-g128") weight_bits = 4, activation_bits = 8, weight_method = "group", group_size = 128;
  else if (name == "w4a4") weight_bits = 4, activation_bits = 4;
  else if (name == "w16a16" || name == "fp") weight_bits = 16, activation_bits = 16;
  else fail("--scheme '{}' is not one of w8a8, w4a8, w4a8-g128, w4a4, w16a16", name);
}

void QuantConfig::validate() const {
  auto check_bits = [](int bits, const char* flag) {
    if (bits != 16 && (bits < 2 || bits > 8)) fail("{} {} is not supported (2..8, or 16 for no quantization)", flag, bits);
  };
  check_bits(weight_bits, "--wbits");
  check_bits(activation_bits, "--abits");
  if (quantize_attention_inputs && !quantizes_activations())
    fail("--quantize-bmm-input quantizes with the activation quantizer: give --abits < 16 (or a --scheme)");
  if (weight_method != "per-channel" && weight_method != "group" && weight_method != "crossquant")
    fail("--weight-quant '{}' is not one of per-channel, group, crossquant", weight_method);
  if (activation_method != "per-token" && activation_method != "per-tensor" && activation_method != "crossquant" &&
      activation_method != "remove-kernel")
    fail("--act-quant '{}' is not one of per-token, per-tensor, crossquant, remove-kernel", activation_method);
  if (!(alpha >= 0 && alpha <= 1)) fail("--alpha {} is outside [0, 1]", alpha);
  if (!(weight_alpha >= 0 && weight_alpha <= 1)) fail("--weight-alpha {} is outside [0, 1]", weight_alpha);
  if (group_size < 1) fail("--group-size must be positive (got {})", group_size);
  if (kernel_target > 1) fail("--kernel-target {} is above 1", kernel_target);
  if (method != "crossquant" && method != "rtn" && method != "smoothquant" && method != "awq")
    fail("--method '{}' is not one of crossquant, rtn, smoothquant, awq", method);
  if (migration_strength > 1) fail("--migration-strength {} is outside [0, 1]", migration_strength);
  if (awq_grid < 1 || !(awq_max_shrink >= 0 && awq_max_shrink < 1) || awq_clip_tokens < 1)
    fail("AWQ settings out of range (grid {}, max shrink {}, clip tokens {})", awq_grid, awq_max_shrink, awq_clip_tokens);
  if (static_columns && activation_method != "crossquant") fail("static columns are a CrossQuant setting");
  if (static_tensor_scale && activation_method != "per-tensor") fail("a static tensor scale is a per-tensor setting");
  if (engine != "fake" && engine != "int" && engine != "auto") fail("--engine '{}' is not one of int, fake, auto", engine);
  // Without quantized weights the weights may come from a quantized checkpoint, known only
  // once the model is loaded; apply_quantization checks the configuration it runs.
  if (engine == "int" && quantizes_weights())
    if (const std::string reason = integer_engine_unsupported_reason(*this); !reason.empty()) fail("--engine int: {}", reason);
}

std::string QuantConfig::describe() const {
  std::string prefix = method == "smoothquant" ? fmt::format("SmoothQuant α={} + ", migration_strength >= 0 ? fmt::format("{}", migration_strength) : std::string("default"))
                       : method == "awq"       ? std::string("AWQ + ")
                                               : std::string();
  if (!quantizes_weights() && !quantizes_activations()) return prefix + "FP32 (W16A16)";
  std::string weights = !quantizes_weights() ? "W16"
                        : weight_method == "group" ? fmt::format("W{} g{}{}", weight_bits, group_size, weight_asymmetric ? " asym" : "")
                        : weight_method == "crossquant" ? fmt::format("W{} crossquant α_W={}", weight_bits, weight_alpha)
                                                        : fmt::format("W{} per-channel", weight_bits);
  std::string activations = !quantizes_activations() ? "A16"
                            : activation_method == "crossquant"
                                ? fmt::format("A{} {}crossquant α={}", activation_bits, static_columns ? "static " : "", alpha)
                            : activation_method == "remove-kernel"
                                ? fmt::format("A{} remove-kernel{}", activation_bits, kernel_target >= 0 ? fmt::format(" p={}", kernel_target) : "")
                                : fmt::format("A{} {}", activation_bits, activation_method);
  if (static_tensor_scale && quantizes_activations()) activations += " (static, calibrated)";
  return prefix + weights + " / " + activations;
}

nlohmann::json QuantConfig::to_json() const {
  nlohmann::json json = {{"weight_bits", weight_bits}, {"activation_bits", activation_bits}};
  if (!scheme.empty()) json["scheme"] = scheme;
  if (quantizes_weights()) {
    json["weight_method"] = weight_method;
    if (weight_method == "group") json["group_size"] = group_size, json["weight_asymmetric"] = weight_asymmetric;
    if (weight_method == "crossquant") json["weight_alpha"] = weight_alpha;
  }
  if (quantizes_activations()) {
    json["activation_method"] = activation_method;
    if (quantize_attention_inputs) json["quantize_bmm_input"] = true;
    if (activation_method == "crossquant") {
      json["alpha"] = alpha;
      json["crossquant_columns"] = static_columns ? "static (calibrated)" : "dynamic (per window)";
      if (static_columns)
        json["calibration"] = {{"source", calib_source}, {"samples", calib_samples}, {"seqlen", calib_seqlen}};
    }
    if (activation_method == "remove-kernel") json["kernel_target"] = kernel_target;
    json["activation_granularity"] = "per sequence (window)";
  }
  json["method"] = method;
  if (method == "smoothquant") json["migration_strength"] = migration_strength >= 0 ? nlohmann::json(migration_strength) : nlohmann::json("family default");
  if (method == "awq")
    json["awq"] = {{"grid", awq_grid}, {"max_shrink", awq_max_shrink}, {"clip_tokens", awq_clip_tokens}, {"clip", awq_clip}};
  if (activation_method == "per-tensor" && quantizes_activations())
    json["per_tensor_scale"] = static_tensor_scale ? "static (calibrated)" : "dynamic (per window)";
  if (needs_calibration() && !json.contains("calibration"))
    json["calibration"] = {{"source", calib_source}, {"samples", calib_samples}, {"seqlen", calib_seqlen}};
  if (engine != "fake") json["engine"] = engine;
  json["description"] = describe();
  return json;
}

std::unique_ptr<Quantizer> make_weight_quantizer(const QuantConfig& config) {
  if (!config.quantizes_weights()) return nullptr;
  QuantizerSpec spec;
  spec.bits = config.weight_bits;
  spec.method = config.weight_method;
  spec.group_size = config.group_size;
  spec.asymmetric = config.weight_asymmetric;
  spec.alpha = config.weight_alpha;
  return make_quantizer(spec);
}

namespace {

CalibrationOptions calibration_options(const QuantConfig& config) {
  CalibrationOptions options;
  options.samples = config.calib_samples;
  options.seqlen = config.calib_seqlen;
  return options;
}

}  // namespace

QuantizationRecord apply_transformation(Transformer& model, const QuantConfig& config, std::span<const int32_t> calibration_tokens) {
  config.validate();
  QuantizationRecord record;
  if (config.needs_calibration() && calibration_tokens.empty())
    fail("{} needs a calibration text (--calib FILE)", config.method == "smoothquant" || config.method == "awq"
                                                           ? config.method
                                                           : std::string("static activation quantization"));
  if (config.method == "smoothquant") {
    // Calibrate before anything changes: the statistics describe the original model.
    const CalibrationStats calibration = calibrate(model, calibration_tokens, calibration_options(config));
    record.calibration_windows = calibration.windows;
    record.migration_strength = config.migration_strength >= 0 ? config.migration_strength : default_migration_strength(model.config());
    record.smoothing = apply_smoothquant(model, calibration, record.migration_strength);
  } else if (config.method == "awq") {
    if (!config.quantizes_weights()) fail("AWQ searches against quantized weights: set --wbits (or a --scheme) below 16");
    AwqOptions options;
    options.weight = make_weight_quantizer(config)->spec();
    options.grid = config.awq_grid;
    options.max_shrink = config.awq_max_shrink;
    options.clip_tokens = config.awq_clip_tokens;
    options.clip = config.awq_clip;
    record.awq = apply_awq(model, calibration_tokens, calibration_options(config), options);
    record.calibration_windows = std::min<int64_t>(config.calib_samples, static_cast<int64_t>(calibration_tokens.size()) / config.calib_seqlen);
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

bool folds_static_columns(const QuantConfig& config) {
  return config.static_columns && config.quantizes_activations() && config.quantizes_weights() &&
         (config.weight_method == "per-channel" || config.weight_method == "group");
}

std::vector<float> static_column_divisors(double alpha, const std::vector<float>& column_absmax) {
  QuantizerSpec cross;
  cross.method = "crossquant";
  cross.alpha = alpha;
  return CrossQuantQuantizer(cross).column_divisors(column_absmax);
}

void scale_weight_columns(std::span<float> weight, int64_t in, const std::vector<float>& factors, bool divide) {
  if (static_cast<int64_t>(factors.size()) != in || in <= 0 || weight.size() % static_cast<size_t>(in) != 0)
    fail("column factors: {} factors for a weight of {} values with {} inputs", factors.size(), weight.size(), in);
  const auto columns = static_cast<size_t>(in);
  for (size_t start = 0; start < weight.size(); start += columns)
    for (size_t j = 0; j < columns; ++j) {
      if (divide) weight[start + j] /= factors[j];
      else weight[start + j] *= factors[j];
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
  const bool dynamic_crossquant = config.activation_method == "crossquant" && !config.static_columns;
  return !dynamic_crossquant && integer_engine_unsupported_reason(config, from_stored_codes).empty() ? "int" : "fake";
}

// A quantized checkpoint: the weights are final (dequantized on load). Activation flags given
// here override the stored activation setting; without them the stored one is used.
QuantConfig apply_stored_quantization(Transformer& model, const StoredQuantization& stored, const QuantConfig& config,
                                      std::span<const int32_t> calibration_tokens) {
  if (config.quantizes_weights() || config.method == "smoothquant" || config.method == "awq")
    fail("{} is already quantized ({}); drop the weight flags (--scheme/--wbits/--method), activation flags may be given",
         model.directory().string(), stored.config.describe());
  QuantConfig effective = stored.config;
  effective.engine = config.engine;
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
  // Before any calibration: validate() leaves the engine of unquantized weights to here.
  if (config.engine == "int")
    if (const std::string reason = integer_engine_unsupported_reason(config); !reason.empty()) fail("--engine int: {}", reason);
  QuantizationRecord record = apply_transformation(model, config, calibration_tokens);
  // Static scales describe the transformed, still unquantized model.
  const auto static_absmax = calibrate_static_activations(model, config, calibration_tokens);
  // The integer engine packs the weights before they are fake-quantized (static CrossQuant
  // folds c^(1−α) into them first).
  if (config.engine == "int") install_integer_backends(model, config, static_absmax);
  if (const auto quantizer = make_weight_quantizer(config)) {
    if (folds_static_columns(config)) quantize_weights_with_folded_columns(model, *quantizer, config.alpha, static_absmax);
    else model.quantize_weights(*quantizer);
  }
  install_activation_quantizers(model, config, static_absmax);
  record.applied = config;
  return record;
}

}  // namespace cq
