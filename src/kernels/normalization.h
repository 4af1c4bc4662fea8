#pragma once
// The two normalizations of the decoder families: LayerNorm (OPT) and RMSNorm (LLaMA), over a
// group of consecutive rows (row-major, n wide). Row statistics are accumulated in double, so
// that wide rows lose no precision to the order of summation. Rows are written four at a time
// in one sweep over the columns. With column_absmax non-null that sweep also raises
// column_absmax[j] to max |out_ij| over the rows (a bit-pattern max, as
// kernels::update_column_absmax): the column maxima dynamic CrossQuant needs, taken while
// the values are in registers. The outputs are the same with or without it.
#include <cstdint>

namespace cq::kernels {

// out_ij = (in_ij − mean_i) / sqrt(var_i + eps) · weight_j + bias_j. out may alias in.
void layer_norm_rows(const float* in, float* out, int64_t rows, int64_t n, const float* weight, const float* bias,
                     double eps, float* column_absmax = nullptr);
// out_ij = weight_j · (in_ij / sqrt(mean_j(in_ij²) + eps)). out may alias in.
void rms_norm_rows(const float* in, float* out, int64_t rows, int64_t n, const float* weight, double eps,
                   float* column_absmax = nullptr);

}  // namespace cq::kernels
