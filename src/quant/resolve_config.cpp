#include "quant/resolve_config.h"

#include "quant/method_table.h"
#include "util/error.h"

namespace cq {

QuantConfig resolve_quant_config(const QuantRequest& request, bool check_effects) {
  const QuantConfig& given = request.values;
  const auto was_given = [&](const char* flag) { return request.given.count(flag) != 0; };
  const WeightTransformation& method = weight_transformation(given.method);
  QuantConfig resolved = given;
  if (!was_given("--act-quant")) resolved.activation_method = std::string(method.default_activation);
  // Without bit widths or granularity the method's own setting applies (SmoothQuant W8A8,
  // AWQ W4A8-g128: the paper's pairings).
  std::string preset = request.scheme;
  if (preset.empty() && !was_given("--wbits") && !was_given("--abits") && !was_given("--weight-quant"))
    preset = method.default_scheme;
  if (!preset.empty()) {
    resolved.apply_scheme(preset);
    if (was_given("--wbits")) resolved.weight_bits = given.weight_bits;
    if (was_given("--abits")) resolved.activation_bits = given.activation_bits;
    if (was_given("--weight-quant")) resolved.weight_method = given.weight_method;
    const QuantMethod* weights = find_quant_method(resolved.weight_method);
    if (weights != nullptr && weights->reads(kOptionGroupSize) && given.group_size != QuantConfig{}.group_size)
      resolved.group_size = given.group_size;
  }
  resolved.calib_source = request.calib;
  const QuantMethod* weights = find_quant_method(resolved.weight_method);
  if (method.asymmetric_groups && weights != nullptr && weights->reads(kOptionAsymmetric)) resolved.weight_asymmetric = true;
  if (request.static_activations && request.calib.empty()) fail("--static-activations needs --calib FILE");
  // Published results (--smoothquant-scales, --awq-results) replace --method's calibration.
  const std::string& results_file = resolved.method_results_file();
  const bool calibrates = method.needs_calibration && results_file.empty();
  if (!request.calib.empty()) {
    // OmniQuant has no static activations: --calib beside its parameter file could only mean
    // "train new ones", which the file contradicts.
    if (given.method == "omniquant" && !calibrates)
      fail("--calib with --omni-params: --method omniquant either applies the file's parameters or trains new ones on "
           "--calib; give one of them");
    if (method.needs_calibration && !calibrates && !request.static_activations)
      fail("--calib has no effect with --{}: the file replaces --method {}'s calibration (add --static-activations for "
           "static activation scales from --calib)",
           given.method == "awq" ? "awq-results" : "smoothquant-scales", given.method);
    if (request.static_activations || !calibrates) {
      const QuantMethod* activations = find_quant_method(resolved.activation_method);
      if (!resolved.quantizes_activations() || activations == nullptr || !activations->calibratable)
        fail("--calib makes activation scales static, which needs --act-quant {} with --abits < 16 (or a calibrated "
             "--method: {})",
             calibratable_method_names(), calibrated_transformation_names());
      if (activations->reads(kOptionStaticColumnAbsmax)) resolved.static_columns = true;
      else resolved.static_tensor_scale = true;
    }
  } else if (calibrates && given.method == "omniquant") {
    fail("--method omniquant needs --omni-params FILE (OmniQuant's released omni_parameters.pth) or --calib FILE (to "
         "train its parameters here)");
  } else if (calibrates) {
    fail("--method {} needs a calibration text (--calib FILE; the authors use 128-512 samples of 512 tokens)", given.method);
  }
  resolved.validate();
  // A flag that would silently do nothing is an error (also on a quantized checkpoint: give
  // the activation bits with the method that overrides the stored one).
  if (check_effects) require_flags_take_effect(request.given, resolved);
  return resolved;
}

}  // namespace cq
