#include "eval/share_context.h"

#include "quant/method_table.h"

namespace cq {

bool activations_are_per_row(const QuantConfig& config) {
  return !config.quantizes_activations() || activation_quant_method(config.activation_method).row_local ||
         config.static_columns || config.static_tensor_scale;
}

}  // namespace cq
