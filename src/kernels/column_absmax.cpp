#include "kernels/column_absmax.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "kernels/avx512.h"

namespace cq::kernels {

void update_column_absmax(const float* x, int64_t rows, int64_t n, int64_t stride, float* column_absmax) {
  int64_t j = 0;
#ifdef __AVX512F__
  const __m512i magnitude = _mm512_set1_epi32(0x7FFFFFFF);
  for (; j + 16 <= n; j += 16) {
    __m512i bits = _mm512_loadu_si512(column_absmax + j);
    for (int64_t i = 0; i < rows; ++i)
      bits = _mm512_max_epu32(bits, _mm512_and_si512(_mm512_loadu_si512(x + i * stride + j), magnitude));
    _mm512_storeu_si512(column_absmax + j, bits);
  }
#endif
  for (; j < n; ++j) {
    uint32_t bits = std::bit_cast<uint32_t>(column_absmax[j]);
    for (int64_t i = 0; i < rows; ++i) bits = std::max(bits, std::bit_cast<uint32_t>(x[i * stride + j]) & 0x7FFFFFFFu);
    column_absmax[j] = std::bit_cast<float>(bits);
  }
}

}  // namespace cq::kernels
