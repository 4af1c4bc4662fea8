// The table of quantization methods (method_table.h) and make_quantizer, which reads it.
#include "quant/method_table.h"

#include <array>

#include "quant/methods.h"
#include "util/error.h"

namespace cq {

namespace {

using enum IntegerSupport;
using enum WeightStorage;

// Fields in declaration order (method_table.h); what a row leaves out is false / None / 0.
constexpr std::array kMethods{
    QuantMethod{.name = "per-tensor",
                .summary = "one Δ = max|X| / qmax for the whole matrix (per window)",
                .quantizes_activations = true,
                .calibratable = true,
                .make = quant_detail::make_per_tensor_quantizer,
                .integer_activations = Exact},
    QuantMethod{.name = "per-token",
                .summary = "one Δ per row (token), eq. 1",
                .quantizes_activations = true,
                .row_local = true,
                .make = quant_detail::make_per_token_quantizer,
                .integer_activations = Exact},
    // Eq. 2 is eq. 1 applied to W's rows (output channels): the same quantizer.
    QuantMethod{.name = "per-channel",
                .summary = "one Δ per output channel of W, eq. 2",
                .quantizes_weights = true,
                .row_local = true,
                .make = quant_detail::make_per_token_quantizer,
                .integer_weights = Exact,
                .stored_weights = RowScales},
    QuantMethod{.name = "group",
                .summary = "one Δ (and zero point if asymmetric) per group of --group-size input channels",
                .quantizes_weights = true,
                .row_local = true,
                .make = quant_detail::make_group_quantizer,
                .options = kOptionGroupSize | kOptionAsymmetric,
                .integer_weights = Exact,
                .stored_weights = GroupScales},
    QuantMethod{.name = "crossquant",
                .summary = "CrossQuant: Δ_ij = t_i^α c_j^(1−α) / qmax, eq. 5",
                .quantizes_weights = true,
                .quantizes_activations = true,
                .calibratable = true,
                .make = quant_detail::make_crossquant_quantizer,
                .options = kOptionAlpha | kOptionStaticColumnAbsmax,
                .integer_activations = StaticOnly,
                .stored_weights = RowScalesColumnFactors},
    // OmniQuant's dynamic activation quantizer (quant/omniquant_grid.h).
    QuantMethod{.name = "per-token-asym",
                .summary = "one scale and zero point per row (token) from its min and max, OmniQuant's activations",
                .quantizes_activations = true,
                .row_local = true,
                .make = quant_detail::make_per_token_asymmetric_quantizer},
    QuantMethod{.name = "remove-kernel",
                .summary = "per-token with a share of the smallest elements set to zero (the paper's ablation)",
                .quantizes_activations = true,
                .make = quant_detail::make_remove_kernel_quantizer,
                .options = kOptionKernelTarget},
};

std::string names_where(bool (*keep)(const QuantMethod&), std::string_view separator) {
  std::string names;
  for (const QuantMethod& method : kMethods) {
    if (!keep(method)) continue;
    if (!names.empty()) names += separator;
    names += method.name;
  }
  return names;
}

bool for_weights(const QuantMethod& m) { return m.quantizes_weights; }
bool for_activations(const QuantMethod& m) { return m.quantizes_activations; }

// Options that only other methods read are refused, so that none silently does nothing.
void reject_options_of_other_methods(const QuantMethod& method, const QuantizerSpec& spec) {
  if (spec.asymmetric && !method.reads(kOptionAsymmetric))
    fail("quantizer {}: 'asymmetric' applies to group-wise quantization only", spec.method);
  if (spec.kernel_target >= 0.0 && !method.reads(kOptionKernelTarget))
    fail("quantizer {}: 'kernel_target' applies to remove-kernel only", spec.method);
  if (!spec.static_column_absmax.empty() && !method.reads(kOptionStaticColumnAbsmax))
    fail("quantizer {}: static column maxima apply to crossquant only", spec.method);
}

}  // namespace

std::span<const QuantMethod> quant_methods() { return kMethods; }

const QuantMethod* find_quant_method(std::string_view name) {
  for (const QuantMethod& method : kMethods)
    if (method.name == name) return &method;
  return nullptr;
}

const QuantMethod& weight_quant_method(std::string_view name, std::string_view flag) {
  const QuantMethod* method = find_quant_method(name);
  if (method == nullptr || !method->quantizes_weights)
    fail("{} '{}' is not one of {}", flag, name, weight_method_names(", "));
  return *method;
}

const QuantMethod& activation_quant_method(std::string_view name, std::string_view flag) {
  const QuantMethod* method = find_quant_method(name);
  if (method == nullptr || !method->quantizes_activations)
    fail("{} '{}' is not one of {}", flag, name, activation_method_names(", "));
  return *method;
}

std::string weight_method_names(std::string_view separator) { return names_where(for_weights, separator); }
std::string activation_method_names(std::string_view separator) { return names_where(for_activations, separator); }

std::string calibratable_method_names() {
  return names_where([](const QuantMethod& m) { return m.quantizes_activations && m.calibratable; }, " or ");
}

std::string integer_method_names(IntegerSupport QuantMethod::*support) {
  std::string names;
  for (const QuantMethod& method : kMethods)
    if (method.*support != IntegerSupport::None) names += (names.empty() ? "" : ", ") + std::string(method.name);
  return names;
}

std::unique_ptr<Quantizer> make_quantizer(const QuantizerSpec& spec) {
  const QuantMethod* method = find_quant_method(spec.method);
  if (method == nullptr)
    fail("unknown quantization method '{}' ({})", spec.method, names_where([](const QuantMethod&) { return true; }, ", "));
  reject_options_of_other_methods(*method, spec);
  return method->make(spec);
}

}  // namespace cq
