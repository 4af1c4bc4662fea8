#include "quant/scaled_rows.h"

#include <algorithm>

#include "quant/quant_common.h"
#include "quant/row_kernels.h"

namespace cq {

bool per_channel_codes_of_scaled_row(const float* weight_row, const float* factors, int64_t n, int bits,
                                     float* scratch, int8_t* codes, float* scale) {
  const float qmax = quant_detail::symmetric_qmax(bits, "per-channel");
  for (int64_t j = 0; j < n; ++j) scratch[j] = weight_row[j] * factors[j];  // one rounding, as scale_columns
  const quant_kernels::RowScan scan = quant_kernels::scan_row(scratch, n, nullptr);
  if (!scan.finite) return false;
  // As PerTokenQuantizer::quantize: Δ = nonzero_divisor(t / qmax), codes = round(x / Δ) clamped.
  *scale = quant_detail::nonzero_divisor(scan.absmax / qmax);
  // The row kernel writes int16 codes; a stack block of them at a time turns into int8.
  constexpr int64_t kBlock = 1024;
  int16_t block[kBlock];
  for (int64_t begin = 0; begin < n; begin += kBlock) {
    const int64_t count = std::min(kBlock, n - begin);
    quant_kernels::quantize_row_codes(scratch + begin, count, *scale, qmax, block);
    for (int64_t j = 0; j < count; ++j) codes[begin + j] = static_cast<int8_t>(block[j]);
  }
  return true;
}

}  // namespace cq
