#include "kernels/column_absmax.h"

#include "kernels/avx512.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "kernels/kernel_dispatch.h"

namespace cq::kernels {

namespace {

// Columns [first, n), portable: also the tail of the AVX-512 version.
void update_columns_scalar(const float* x, int64_t rows, int64_t first, int64_t n, int64_t stride,
                           float* column_absmax) {
  for (int64_t j = first; j < n; ++j) {
    uint32_t bits = std::bit_cast<uint32_t>(column_absmax[j]);
    for (int64_t i = 0; i < rows; ++i) bits = std::max(bits, std::bit_cast<uint32_t>(x[i * stride + j]) & 0x7FFFFFFFu);
    column_absmax[j] = std::bit_cast<float>(bits);
  }
}

}  // namespace

CQ_AVX512_BEGIN
namespace {
// Whole 16-column vectors; returns the first column left for the scalar tail.
int64_t update_column_vectors_avx512(const float* x, int64_t rows, int64_t n, int64_t stride, float* column_absmax) {
  int64_t j = 0;
  const __m512i magnitude = _mm512_set1_epi32(0x7FFFFFFF);
  for (; j + 16 <= n; j += 16) {
    __m512i bits = _mm512_loadu_si512(column_absmax + j);
    for (int64_t i = 0; i < rows; ++i)
      bits = _mm512_max_epu32(bits, _mm512_and_si512(_mm512_loadu_si512(x + i * stride + j), magnitude));
    _mm512_storeu_si512(column_absmax + j, bits);
  }
  return j;
}
}  // namespace
CQ_AVX512_END

void update_column_absmax(const float* x, int64_t rows, int64_t n, int64_t stride, float* column_absmax) {
  const int64_t first = avx512_kernels() ? update_column_vectors_avx512(x, rows, n, stride, column_absmax) : 0;
  update_columns_scalar(x, rows, first, n, stride, column_absmax);
}

}  // namespace cq::kernels
