#include "quant/quantizer.h"

#include "util/error.h"

namespace cq {

// Multiplies in the order the fake quantizers do ((code · c_j^(1−α)) · t_i^α/qmax for
// CrossQuant, as in the appendix code), so dequantize(i, j) equals the fake-quantized value
// bit for bit.
float QuantizedMatrix::dequantize(int64_t i, int64_t j) const {
  if (i < 0 || i >= rows || j < 0 || j >= cols)
    fail("dequantize: element ({}, {}) is outside the {} x {} matrix", i, j, rows, cols);
  return dequantize_unchecked(i, j, group_size > 0 ? (cols + group_size - 1) / group_size : 0);
}

std::vector<float> QuantizedMatrix::dequantized() const {
  std::vector<float> values(static_cast<size_t>(rows * cols));
  const int64_t groups_per_row = group_size > 0 ? (cols + group_size - 1) / group_size : 0;
#pragma omp parallel for schedule(static) if (rows * cols > (int64_t{1} << 16))
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) values[static_cast<size_t>(i * cols + j)] = dequantize_unchecked(i, j, groups_per_row);
  return values;
}

float QuantizedMatrix::dequantize_unchecked(int64_t i, int64_t j, int64_t groups_per_row) const {
  const auto element = static_cast<size_t>(i * cols + j);
  float value = static_cast<float>(codes[element]);
  if (group_size > 0) {
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
