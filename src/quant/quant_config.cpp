#include "quant/quant_config.h"

#include <nlohmann/json.hpp>

#include "quant/crossquant.h"
#include "quant/method_table.h"
#include "quant/quantizer.h"
#include "util/error.h"

#include <algorithm>
#include <array>
#include <cmath>

namespace cq {

namespace {
// clang-format off
constexpr std::array kSchemes{
    SchemePreset{"w8a8", 8, 8, "per-channel", 128},
    SchemePreset{"w4a8", 4, 8, "per-channel", 128},
    SchemePreset{"w4a8-g128", 4, 8, "group", 128},
    SchemePreset{"w4a4", 4, 4, "per-channel", 128},
    SchemePreset{"w6a6", 6, 6, "per-channel", 128},           // OmniQuant's table
    SchemePreset{"w4a16-g128", 4, 16, "group", 128},          // weight-only (OmniQuant, AWQ, GPTQ tables)
    SchemePreset{"w16a16", 16, 16, "per-channel", 128},
};
constexpr std::array kTransformations{
    WeightTransformation{"crossquant", "round-to-nearest weights, CrossQuant activations", "crossquant", "", false, false},
    WeightTransformation{"rtn", "round-to-nearest weights, per-token activations", "per-token", "", false, false},
    WeightTransformation{"smoothquant", "SmoothQuant smoothing (W8A8 unless bits are given)", "per-token", "w8a8", true, false},
    WeightTransformation{"awq", "AWQ scale and clip search (W4A8-g128 asymmetric unless bits are given)", "per-token",
                         "w4a8-g128", true, true},
    WeightTransformation{"gptq", "GPTQ weights from calibration Hessians (W4A8 per-channel unless bits are given)",
                         "per-token", "w4a8", true, false},
    WeightTransformation{"omniquant", "OmniQuant's LET and LWC, trained on --calib or read from --omni-params FILE (W4A4 "
                         "unless bits are given)",
                         "per-token-asym", "w4a4", true, true},
};
// clang-format on

template <typename Rows>
std::string row_names(const Rows& rows, std::string_view separator) {
  std::string names;
  for (const auto& row : rows) names += (names.empty() ? "" : std::string(separator)) + std::string(row.name);
  return names;
}
}  // namespace

std::span<const SchemePreset> scheme_presets() { return kSchemes; }
std::string scheme_names(std::string_view separator) { return row_names(kSchemes, separator); }
std::span<const WeightTransformation> weight_transformations() { return kTransformations; }
std::string weight_transformation_names(std::string_view separator) { return row_names(kTransformations, separator); }

std::string calibrated_transformation_names() {
  std::string names;
  for (const WeightTransformation& row : kTransformations)
    if (row.needs_calibration) names += (names.empty() ? "" : ", ") + std::string(row.name);
  return names;
}

const WeightTransformation* find_weight_transformation(std::string_view name) {
  for (const WeightTransformation& row : kTransformations)
    if (row.name == name) return &row;
  return nullptr;
}

const WeightTransformation& weight_transformation(std::string_view name) {
  if (const WeightTransformation* row = find_weight_transformation(name)) return *row;
  fail("--method '{}' is not one of {}", name, weight_transformation_names(", "));
}

bool QuantConfig::needs_calibration() const {
  const WeightTransformation* transformation = find_weight_transformation(method);
  return (transformation != nullptr && transformation->needs_calibration && method_results_file().empty()) || static_columns ||
         static_tensor_scale;
}

const std::string& QuantConfig::method_results_file() const {
  static const std::string none;
  return method == "smoothquant" ? smoothquant_scales : method == "awq" ? awq_results : method == "omniquant" ? omni_params : none;
}

void QuantConfig::apply_scheme(const std::string& name) {
  // "fp" is an alias of w16a16 kept for old command lines.
  const std::string_view preset_name = name == "fp" ? std::string_view("w16a16") : std::string_view(name);
  for (const SchemePreset& preset : kSchemes) {
    if (preset.name != preset_name) continue;
    scheme = name;
    weight_bits = preset.weight_bits;
    activation_bits = preset.activation_bits;
    weight_method = preset.weight_method;
    if (preset.weight_method == "group") group_size = preset.group_size;
    return;
  }
  fail("--scheme '{}' is not one of {}", name, scheme_names(", "));
}

void QuantConfig::validate() const {
  auto check_bits = [](int bits, const char* flag) {
    if (bits != 16 && (bits < 2 || bits > 8)) fail("{} {} is not supported (2..8, or 16 for no quantization)", flag, bits);
  };
  check_bits(weight_bits, "--wbits");
  check_bits(activation_bits, "--abits");
  if (quantize_attention_inputs && !quantizes_activations())
    fail("--quantize-bmm-input quantizes with the activation quantizer: give --abits < 16 (or a --scheme)");
  weight_quant_method(weight_method);
  activation_quant_method(activation_method);
  if (!(alpha >= 0 && alpha <= 1)) fail("--alpha {} is outside [0, 1]", alpha);
  if (!(weight_alpha >= 0 && weight_alpha <= 1)) fail("--weight-alpha {} is outside [0, 1]", weight_alpha);
  if (group_size < 1) fail("--group-size must be positive (got {})", group_size);
  if (kernel_target > 1) fail("--kernel-target {} is above 1", kernel_target);
  weight_transformation(method);
  if (migration_strength > 1) fail("--migration-strength {} is outside [0, 1]", migration_strength);
  if (awq_grid < 1 || !(awq_max_shrink >= 0 && awq_max_shrink < 1) || awq_clip_tokens < 1)
    fail("AWQ settings out of range (grid {}, max shrink {}, clip tokens {})", awq_grid, awq_max_shrink, awq_clip_tokens);
  if (static_columns && activation_method != "crossquant") fail("static columns are a CrossQuant setting");
  if (!(gptq_dampening > 0 && gptq_dampening < 1)) fail("--gptq-damp {} is outside (0, 1)", gptq_dampening);
  if (method == "gptq" && quantizes_weights()) {
    if (weight_method != "per-channel" && weight_method != "group")
      fail("--method gptq rounds onto per-channel or group-wise grids: --weight-quant {} is not one of them", weight_method);
    // Static CrossQuant would quantize W·diag(c^(1−α)), a different matrix from the one GPTQ solved for.
    if (folds_static_columns(*this))
      fail("--method gptq with static CrossQuant activations is not supported (it folds the calibrated c^(1-alpha) into "
           "the weights before quantizing them); use dynamic CrossQuant (no --static-activations) or per-token/per-tensor");
  }
  if (static_tensor_scale && activation_method != "per-tensor") fail("a static tensor scale is a per-tensor setting");
  if (method == "omniquant") {
    if (quantizes_weights() && weight_method != "per-channel" && weight_method != "group")
      fail("--method omniquant quantizes weights per output channel or per group (asymmetric, with its learned clipping): "
           "--weight-quant {} is neither",
           weight_method);
    if (quantize_attention_inputs)
      fail("--quantize-bmm-input with --method omniquant: OmniQuant quantizes q, k and v itself (after RoPE, per token)");
    if (engine == "int")
      fail("--engine int with --method omniquant: its asymmetric weights and activations run on --engine fake only "
           "(auto picks it)");
    if (rotation != "none") fail("--rotate {} with --method omniquant is not supported (its LET was learned on the unrotated model)", rotation);
    if (static_columns || static_tensor_scale)
      fail("--method omniquant with static activation scales (--calib) is not supported: its activations are dynamic");
    if (omni_epochs < 0) fail("--epochs must be zero or positive, got {}", omni_epochs);
    for (const auto& [flag, rate] : {std::pair{"--lr-lwc", omni_lwc_lr}, {"--lr-let", omni_let_lr}})
      if (!(rate >= 0 && std::isfinite(rate))) fail("{} must be a finite non-negative number, got {}", flag, rate);
    if (omni_params.empty() && !quantizes_weights() && quantizes_activations())
      fail("--method omniquant calibration learns weight clipping: quantize the weights (--wbits < 16 or a --scheme)");
  }
  if (rotation != "none" && rotation != "hadamard") fail("--rotate '{}' is not one of none, hadamard", rotation);
  if (rotation_seed > static_cast<uint64_t>(kMaxRotationSeed))
    fail("--rotate-seed {} is above {} (2^53 - 1, the largest seed a checkpoint's JSON stores exactly)", rotation_seed,
         kMaxRotationSeed);
  if (rotation != "none" && (method == "smoothquant" || method == "awq"))
    fail("--rotate {} with --method {}: not supported (the online transform of down_proj's input does not commute with "
         "their per-channel scales, and the rotation already spreads the outlier channels they migrate); use --method "
         "rtn or crossquant",
         rotation, method);
  if (engine != "fake" && engine != "int" && engine != "auto") fail("--engine '{}' is not one of int, fake, auto", engine);
  // Without quantized weights the weights may come from a quantized checkpoint, known only
  // once the model is loaded; apply_quantization checks the configuration it runs.
  if (engine == "int" && quantizes_weights())
    if (const std::string reason = integer_engine_unsupported_reason(*this); !reason.empty()) fail("--engine int: {}", reason);
}

std::string label_with_rotation(const std::string& method_part, const std::string& rotation) {
  return rotation == "hadamard" ? method_part + "Hadamard + " : method_part;
}

std::string QuantConfig::omniquant_label() const {
  if (!omni_params.empty()) return "OmniQuant + ";
  return omni_epochs == 0 ? std::string("OmniQuant (initialisation, 0 epochs) + ")
                          : fmt::format("OmniQuant ({} epoch{}, lr LWC {} / LET {}) + ", omni_epochs, omni_epochs == 1 ? "" : "s", omni_lwc_lr, omni_let_lr);
}

std::string QuantConfig::describe() const {
  std::string prefix = method == "smoothquant" ? fmt::format("SmoothQuant{} α={} + ", smoothquant_scales.empty() ? "" : " (published act_scales)", migration_strength >= 0 ? fmt::format("{}", migration_strength) : std::string("default"))
                       : method == "awq"       ? std::string(awq_results.empty() ? "AWQ + " : "AWQ (published results) + ")
                       : method == "gptq"      ? std::string(gptq_act_order ? "GPTQ act-order + " : "GPTQ + ")
                       : method == "omniquant" ? omniquant_label()
                                               : std::string();
  prefix = label_with_rotation(prefix, rotation);
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
  if (method == "smoothquant" && !smoothquant_scales.empty()) json["smoothquant_scales"] = smoothquant_scales;
  if (method == "awq" && !awq_results.empty()) json["awq"] = {{"results", awq_results}};
  else if (method == "awq")
    json["awq"] = {{"grid", awq_grid}, {"max_shrink", awq_max_shrink}, {"clip_tokens", awq_clip_tokens}, {"clip", awq_clip}};
  if (method == "omniquant" && !omni_params.empty())
    json["omniquant"] = {{"parameters", omni_params}, {"attention_products_quantized", quantizes_activations()}};
  else if (method == "omniquant")
    json["omniquant"] = {{"calibrated", true},
                         {"epochs", omni_epochs},
                         {"lwc_lr", omni_lwc_lr},
                         {"let_lr", omni_let_lr},
                         {"attention_products_quantized", quantizes_activations()}};
  if (method == "gptq") json["gptq"] = {{"dampening", gptq_dampening}, {"act_order", gptq_act_order}, {"block_size", 128}};
  if (activation_method == "per-tensor" && quantizes_activations())
    json["per_tensor_scale"] = static_tensor_scale ? "static (calibrated)" : "dynamic (per window)";
  if (needs_calibration() && !json.contains("calibration"))
    json["calibration"] = {{"source", calib_source}, {"samples", calib_samples}, {"seqlen", calib_seqlen}};
  if (engine != "fake") json["engine"] = engine;
  if (rotation != "none") json["rotation"] = {{"kind", rotation}, {"seed", rotation_seed}};
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

std::string integer_engine_unsupported_reason(const QuantConfig& config, bool from_stored_codes) {
  if (!config.quantizes_weights() || !config.quantizes_activations())
    return fmt::format("the integer engine needs quantized weights and activations (got W{}A{})", config.weight_bits,
                       config.activation_bits);
  const QuantMethod& weights = weight_quant_method(config.weight_method);
  if (weights.integer_weights == IntegerSupport::None)
    return fmt::format("--weight-quant {} has no integer kernel ({})", config.weight_method,
                       integer_method_names(&QuantMethod::integer_weights));
  if (weights.stored_weights == WeightStorage::GroupScales && config.weight_bits > 4)
    return fmt::format("group-wise W{} has no integer kernel (group-wise weights need --wbits <= 4, the INT4 kernel)",
                       config.weight_bits);
  if (weights.stored_weights == WeightStorage::GroupScales && config.group_size % 8 != 0)
    return fmt::format("the INT4 kernel needs --group-size a multiple of 8 (got {})", config.group_size);
  const IntegerSupport activations = activation_quant_method(config.activation_method).integer_activations;
  if (activations == IntegerSupport::None)
    return fmt::format("--act-quant {} has no integer path ({})", config.activation_method,
                       integer_method_names(&QuantMethod::integer_activations));
  if (config.method == "gptq" && activations == IntegerSupport::StaticOnly && !config.static_columns &&
      !config.static_tensor_scale)
    return "dynamic CrossQuant folds each window's c^(1−α) into the FP32 weights and rounds them again, which would undo "
           "GPTQ's rounding: give --act-quant per-token or per-tensor, or --engine fake";
  if (from_stored_codes && activations == IntegerSupport::StaticOnly && !config.static_columns &&
      !config.static_tensor_scale)
    return "dynamic CrossQuant folds each window's c^(1−α) into the FP32 weights before quantizing them "
           "(docs/INTEGER_ENGINE.md), and a quantized checkpoint holds only the quantized weights: quantize with "
           "static CrossQuant (--calib), or give --act-quant per-token or per-tensor (with --abits), or --engine fake";
  return {};
}

}  // namespace cq
