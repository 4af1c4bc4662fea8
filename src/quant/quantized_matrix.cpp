#include "quant/quantizer.h"

#include "util/error.h"

namespace cq {

// Multiplies in the order the fake quantizers do ((code · c_j^(1−α)) · t_i^α/qmax for
// CrossQuant, as in the appendix code), so dequantize(i, j) equals the fake-quantized value
// bit for bit.
float QuantizedMatrix::dequantize(int64_t i, int64_t j) const {
  if (i < 0 || i >= rows || j < 0 || j >= cols)
    fail("dequantize: element ({}, {}) is outside the {} x {} matrix", i, j, rows, cols);
  const auto element = static_cast<size_t>(i * cols + j);
  float value = static_cast<float>(codes[element]);
  if (group_size > 0) {
    const int64_t groups_per_row = (cols + group_size - 1) / group_size;
    const auto group = static_cast<size_t>(i * groups_per_row + j / group_size);
    if (!group_zeros.empty()) value -= static_cast<float>(group_zeros[group]);
    value *= group_scales[group];
  }
  if (!column_factors.empty()) value *= column_factors[static_cast<size_t>(j)];
  if (!row_scales.empty()) value *= row_scales[static_cast<size_t>(i)];
  if (tensor_scale != 0.f) value *= tensor_scale;
  return value;
}

}  // namespace cq
