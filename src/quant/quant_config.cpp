#include "quant/quant_config.h"

#include <nlohmann/json.hpp>

#include "model/transformer.h"
#include "quant/calibration.h"
#include "quant/quantizer.h"
#include "util/error.h"

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
  if (weight_method != "per-channel" && weight_method != "group" && weight_method != "crossquant")
    fail("--weight-quant '{}' is not one of per-channel, group, crossquant", weight_method);
  if (activation_method != "per-token" && activation_method != "per-tensor" && activation_method != "crossquant" &&
      activation_method != "remove-kernel")
    fail("--act-quant '{}' is not one of per-token, per-tensor, crossquant, remove-kernel", activation_method);
  if (!(alpha >= 0 && alpha <= 1)) fail("--alpha {} is outside [0, 1]", alpha);
  if (!(weight_alpha >= 0 && weight_alpha <= 1)) fail("--weight-alpha {} is outside [0, 1]", weight_alpha);
  if (group_size < 1) fail("--group-size must be positive (got {})", group_size);
  if (kernel_target > 1) fail("--kernel-target {} is above 1", kernel_target);
}

std::string QuantConfig::describe() const {
  if (!quantizes_weights() && !quantizes_activations()) return "FP32 (W16A16)";
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
  return weights + " / " + activations;
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
    if (activation_method == "crossquant") {
      json["alpha"] = alpha;
      json["crossquant_columns"] = static_columns ? "static (calibrated)" : "dynamic (per window)";
      if (static_columns)
        json["calibration"] = {{"source", calib_source}, {"samples", calib_samples}, {"seqlen", calib_seqlen}};
    }
    if (activation_method == "remove-kernel") json["kernel_target"] = kernel_target;
    json["activation_granularity"] = "per sequence (window)";
  }
  json["description"] = describe();
  return json;
}

void apply_quantization(Transformer& model, const QuantConfig& config, std::span<const int32_t> calibration_tokens) {
  config.validate();
  // Calibrate before any weight is quantized: the statistics describe the original model.
  CalibrationStats calibration;
  const bool static_crossquant = config.quantizes_activations() && config.activation_method == "crossquant" && config.static_columns;
  if (static_crossquant) {
    if (calibration_tokens.empty()) fail("static CrossQuant needs a calibration text (--calib FILE)");
    CalibrationOptions options;
    options.samples = config.calib_samples;
    options.seqlen = config.calib_seqlen;
    calibration = calibrate(model, calibration_tokens, options);
  }
  if (config.quantizes_weights()) {
    QuantizerSpec spec;
    spec.bits = config.weight_bits;
    spec.method = config.weight_method;
    spec.group_size = config.group_size;
    spec.asymmetric = config.weight_asymmetric;
    spec.alpha = config.weight_alpha;
    model.quantize_weights(*make_quantizer(spec));
  }
  if (config.quantizes_activations()) {
    QuantizerSpec spec;
    spec.bits = config.activation_bits;
    spec.method = config.activation_method;
    spec.alpha = config.alpha;
    spec.kernel_target = config.kernel_target;
    if (!static_crossquant) {
      model.set_activation_quantizer_everywhere(std::shared_ptr<const Quantizer>(make_quantizer(spec)));
      return;
    }
    for (int64_t layer = 0; layer < model.config().num_layers; ++layer) {
      for (int site = 0; site < kInputSites; ++site) {
        spec.static_column_absmax = calibration.absmax(layer, static_cast<InputSite>(site));
        model.set_activation_quantizer(layer, static_cast<InputSite>(site), std::shared_ptr<const Quantizer>(make_quantizer(spec)));
      }
    }
  }
}

}  // namespace cq
