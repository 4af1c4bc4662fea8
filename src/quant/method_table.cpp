// The table of quantization methods (method_table.h) and make_quantizer, which reads it.
#include "quant/method_table.h"

#include <array>

#include "quant/methods.h"
#include "util/error.h"

namespace cq {

namespace {

using enum IntegerSupport;
using enum WeightStorage;

// clang-format off
constexpr std::array kMethods{
    QuantMethod{"per-tensor", "one Δ = max|X| / qmax for the whole matrix (per window)",
                false, true, false, quant_detail::make_per_tensor_quantizer, 0,
                None, Exact, NotStorable},
    QuantMethod{"per-token", "one Δ per row (token), eq. 1",
                false, true, true, quant_detail::make_per_token_quantizer, 0,
                None, Exact, NotStorable},
    // Eq. 2 is eq. 1 applied to W's rows (output channels): the same quantizer.
    QuantMethod{"per-channel", "one Δ per output channel of W, eq. 2",
                true, false, true, quant_detail::make_per_token_quantizer, 0,
                Exact, None, RowScales},
    QuantMethod{"group", "one Δ (and zero point if asymmetric) per group of --group-size input channels",
                true, false, true, quant_detail::make_group_quantizer, kOptionGroupSize | kOptionAsymmetric,
                Exact, None, GroupScales},
    QuantMethod{"crossquant", "CrossQuant: Δ_ij = t_i^α c_j^(1−α) / qmax, eq. 5",
                true, true, false, quant_detail::make_crossquant_quantizer, kOptionAlpha | kOptionStaticColumnAbsmax,
                None, StaticOnly, RowScalesColumnFactors},
    QuantMethod{"remove-kernel", "per-token with a share of the smallest elements set to zero (the paper's ablation)",
                false, true, false, quant_detail::make_remove_kernel_quantizer, kOptionKernelTarget,
                None, None, NotStorable},
};
// clang-format on

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
