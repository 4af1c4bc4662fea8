#pragma once
// One factory per method file; the rows of method_table.cpp name them (internal to src/quant/).
#include <memory>

#include "quant/quantizer.h"

namespace cq::quant_detail {

std::unique_ptr<Quantizer> make_per_tensor_quantizer(const QuantizerSpec& spec);
std::unique_ptr<Quantizer> make_per_token_quantizer(const QuantizerSpec& spec);
std::unique_ptr<Quantizer> make_group_quantizer(const QuantizerSpec& spec);
std::unique_ptr<Quantizer> make_crossquant_quantizer(const QuantizerSpec& spec);
std::unique_ptr<Quantizer> make_remove_kernel_quantizer(const QuantizerSpec& spec);
std::unique_ptr<Quantizer> make_per_token_asymmetric_quantizer(const QuantizerSpec& spec);

}  // namespace cq::quant_detail
