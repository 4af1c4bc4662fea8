#pragma once
// Whether lm-eval requests may share a quantization window (LoglikelihoodOptions::share_context):
// only when the activation quantizer's statistics are those of each row alone, or fixed by
// calibration. `cq eval` and the Python module ask the same function, so they score alike.
#include "quant/quant_config.h"

namespace cq {

// Activation quantizers whose scales depend on other tokens of the window (dynamic
// CrossQuant's column maxima, per-tensor, remove-kernel's threshold) would see the context
// and every choice together in a shared tree, so those settings pack each request as a
// sequence of its own: the same numbers as one forward per request.
bool activations_are_per_row(const QuantConfig& config);

}  // namespace cq
