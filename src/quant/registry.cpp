// Method name -> factory. Adding a method is one new file plus one line here.
#include <array>
#include <string_view>

#include "quant/methods.h"
#include "util/error.h"

namespace cq {

namespace {
struct Registration {
  std::string_view method;
  std::unique_ptr<Quantizer> (*make)(const QuantizerSpec&);
};

constexpr std::array kRegistry{
    Registration{"per-tensor", quant_detail::make_per_tensor_quantizer},
    Registration{"per-token", quant_detail::make_per_token_quantizer},
    // Eq. 2 is eq. 1 applied to W's rows (output channels): the same method.
    Registration{"per-channel", quant_detail::make_per_token_quantizer},
    Registration{"group", quant_detail::make_group_quantizer},
    Registration{"crossquant", quant_detail::make_crossquant_quantizer},
    Registration{"remove-kernel", quant_detail::make_remove_kernel_quantizer},
};

// Options that only one method reads are rejected elsewhere, so that none silently does nothing.
void reject_options_of_other_methods(const QuantizerSpec& spec) {
  if (spec.asymmetric && spec.method != "group")
    fail("quantizer {}: 'asymmetric' applies to group-wise quantization only", spec.method);
  if (spec.kernel_target >= 0.0 && spec.method != "remove-kernel")
    fail("quantizer {}: 'kernel_target' applies to remove-kernel only", spec.method);
  if (!spec.static_column_absmax.empty() && spec.method != "crossquant")
    fail("quantizer {}: static column maxima apply to crossquant only", spec.method);
}
}  // namespace

std::unique_ptr<Quantizer> make_quantizer(const QuantizerSpec& spec) {
  for (const Registration& registration : kRegistry) {
    if (registration.method == spec.method) {
      reject_options_of_other_methods(spec);
      return registration.make(spec);
    }
  }
  fail("unknown quantization method '{}' (per-tensor, per-token, per-channel, group, crossquant, "
       "remove-kernel)",
       spec.method);
}

}  // namespace cq
