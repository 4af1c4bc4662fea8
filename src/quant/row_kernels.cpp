#include "quant/row_kernels.h"

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>

#ifdef __AVX512F__
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*() and trip -Wuninitialized
// when inlined (GCC bug 105593); the warning is about the header, not this code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

namespace cq::quant_kernels {

namespace scalar {

namespace {
// round-half-to-even (default rounding mode), then clamp to ±qmax.
inline float round_and_clamp(float quotient, float qmax, RowCounts& counts) {
  float code = std::nearbyint(quotient);
  if (code > qmax) {
    code = qmax;
    ++counts.clipped;
  } else if (code < -qmax) {
    code = -qmax;
    ++counts.clipped;
  }
  if (code == 0.f) ++counts.kernel;
  return code;
}
}  // namespace

RowScan scan_row(const float* x, int64_t n, float* column_absmax) {
  RowScan scan;
  for (int64_t j = 0; j < n; ++j) {
    const float magnitude = std::fabs(x[j]);
    if (!(magnitude <= FLT_MAX)) scan.finite = false;  // NaN compares false too
    scan.absmax = std::max(scan.absmax, magnitude);
    if (magnitude == 0.f) ++scan.exact_zeros;
    if (column_absmax != nullptr) column_absmax[j] = std::max(column_absmax[j], magnitude);
  }
  return scan;
}

RowCounts fake_quantize_row(float* x, int64_t n, float divisor, float qmax) {
  RowCounts counts;
  for (int64_t j = 0; j < n; ++j) x[j] = round_and_clamp(x[j] / divisor, qmax, counts) * divisor;
  return counts;
}

RowCounts quantize_row_codes(const float* x, int64_t n, float divisor, float qmax,
                             int16_t* codes) {
  RowCounts counts;
  for (int64_t j = 0; j < n; ++j)
    codes[j] = static_cast<int16_t>(round_and_clamp(x[j] / divisor, qmax, counts));
  return counts;
}

RowCounts fake_quantize_row_cross(float* x, int64_t n, float row_divisor,
                                  const float* column_divisors, float qmax) {
  RowCounts counts;
  for (int64_t j = 0; j < n; ++j) {
    const float code = round_and_clamp(x[j] / row_divisor / column_divisors[j], qmax, counts);
    x[j] = code * column_divisors[j] * row_divisor;
  }
  return counts;
}

RowCounts quantize_row_cross_codes(const float* x, int64_t n, float row_divisor,
                                   const float* column_divisors, float qmax, int16_t* codes) {
  RowCounts counts;
  for (int64_t j = 0; j < n; ++j)
    codes[j] = static_cast<int16_t>(
        round_and_clamp(x[j] / row_divisor / column_divisors[j], qmax, counts));
  return counts;
}

}  // namespace scalar

#ifdef __AVX512F__
namespace avx512 {

namespace {
constexpr int kLanes = 16;

inline __mmask16 tail_mask(int64_t remaining) {
  return static_cast<__mmask16>((1u << remaining) - 1u);
}

// |v| by clearing the sign bit (GCC 12's _mm512_abs_ps trips -Wmaybe-uninitialized).
inline __m512 absolute(__m512 v) {
  return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7FFFFFFF)));
}

inline int64_t count(__mmask16 mask) { return std::popcount(static_cast<unsigned>(mask)); }

// Same steps as scalar::round_and_clamp on 16 lanes; `valid` masks off a tail's lanes.
inline __m512 round_and_clamp(__m512 quotient, __m512 qmax, __mmask16 valid,
                              RowCounts& counts) {
  const __m512 code = _mm512_roundscale_ps(quotient, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 magnitude = absolute(code);
  counts.clipped += count(_mm512_mask_cmp_ps_mask(valid, magnitude, qmax, _CMP_GT_OQ));
  const __m512 clamped = _mm512_min_ps(_mm512_max_ps(code, _mm512_sub_ps(_mm512_setzero_ps(), qmax)), qmax);
  counts.kernel += count(_mm512_mask_cmp_ps_mask(valid, clamped, _mm512_setzero_ps(), _CMP_EQ_OQ));
  return clamped;
}

inline void store_codes(int16_t* codes, __m512 code, __mmask16 valid) {
  _mm512_mask_cvtsepi32_storeu_epi16(codes, valid, _mm512_cvtps_epi32(code));
}
}  // namespace

RowScan scan_row(const float* x, int64_t n, float* column_absmax) {
  const __m512 largest_finite = _mm512_set1_ps(FLT_MAX);
  __m512 absmax0 = _mm512_setzero_ps();
  __m512 absmax1 = _mm512_setzero_ps();
  __mmask16 nonfinite = 0;  // NaN or Inf: |x| <= FLT_MAX fails (unordered compare for NaN)
  const __m512 zero = _mm512_setzero_ps();
  int64_t exact_zeros = 0;
  int64_t j = 0;
  for (; j + 2 * kLanes <= n; j += 2 * kLanes) {
    const __m512 a = absolute(_mm512_loadu_ps(x + j));
    const __m512 b = absolute(_mm512_loadu_ps(x + j + kLanes));
    nonfinite |= _mm512_cmp_ps_mask(a, largest_finite, _CMP_NLE_UQ);
    nonfinite |= _mm512_cmp_ps_mask(b, largest_finite, _CMP_NLE_UQ);
    exact_zeros += count(_mm512_cmp_ps_mask(a, zero, _CMP_EQ_OQ));
    exact_zeros += count(_mm512_cmp_ps_mask(b, zero, _CMP_EQ_OQ));
    absmax0 = _mm512_max_ps(absmax0, a);
    absmax1 = _mm512_max_ps(absmax1, b);
    if (column_absmax != nullptr) {
      _mm512_storeu_ps(column_absmax + j, _mm512_max_ps(_mm512_loadu_ps(column_absmax + j), a));
      _mm512_storeu_ps(column_absmax + j + kLanes, _mm512_max_ps(_mm512_loadu_ps(column_absmax + j + kLanes), b));
    }
  }
  for (; j < n; j += kLanes) {
    const __mmask16 valid = n - j >= kLanes ? static_cast<__mmask16>(0xFFFF) : tail_mask(n - j);
    const __m512 a = absolute(_mm512_maskz_loadu_ps(valid, x + j));
    nonfinite |= _mm512_mask_cmp_ps_mask(valid, a, largest_finite, _CMP_NLE_UQ);
    exact_zeros += count(_mm512_mask_cmp_ps_mask(valid, a, zero, _CMP_EQ_OQ));
    absmax0 = _mm512_max_ps(absmax0, a);
    if (column_absmax != nullptr) {
      const __m512 column = _mm512_maskz_loadu_ps(valid, column_absmax + j);
      _mm512_mask_storeu_ps(column_absmax + j, valid, _mm512_max_ps(column, a));
    }
  }
  RowScan scan;
  scan.absmax = _mm512_reduce_max_ps(_mm512_max_ps(absmax0, absmax1));
  scan.exact_zeros = exact_zeros;
  scan.finite = nonfinite == 0;
  return scan;
}

RowCounts fake_quantize_row(float* x, int64_t n, float divisor, float qmax) {
  const __m512 divisor_v = _mm512_set1_ps(divisor);
  const __m512 qmax_v = _mm512_set1_ps(qmax);
  RowCounts counts;
  for (int64_t j = 0; j < n; j += kLanes) {
    const __mmask16 valid = n - j >= kLanes ? static_cast<__mmask16>(0xFFFF) : tail_mask(n - j);
    const __m512 value = _mm512_maskz_loadu_ps(valid, x + j);
    const __m512 code = round_and_clamp(_mm512_div_ps(value, divisor_v), qmax_v, valid, counts);
    _mm512_mask_storeu_ps(x + j, valid, _mm512_mul_ps(code, divisor_v));
  }
  return counts;
}

RowCounts quantize_row_codes(const float* x, int64_t n, float divisor, float qmax,
                             int16_t* codes) {
  const __m512 divisor_v = _mm512_set1_ps(divisor);
  const __m512 qmax_v = _mm512_set1_ps(qmax);
  RowCounts counts;
  for (int64_t j = 0; j < n; j += kLanes) {
    const __mmask16 valid = n - j >= kLanes ? static_cast<__mmask16>(0xFFFF) : tail_mask(n - j);
    const __m512 value = _mm512_maskz_loadu_ps(valid, x + j);
    store_codes(codes + j, round_and_clamp(_mm512_div_ps(value, divisor_v), qmax_v, valid, counts),
                valid);
  }
  return counts;
}

RowCounts fake_quantize_row_cross(float* x, int64_t n, float row_divisor,
                                  const float* column_divisors, float qmax) {
  const __m512 row_divisor_v = _mm512_set1_ps(row_divisor);
  const __m512 qmax_v = _mm512_set1_ps(qmax);
  RowCounts counts;
  for (int64_t j = 0; j < n; j += kLanes) {
    const __mmask16 valid = n - j >= kLanes ? static_cast<__mmask16>(0xFFFF) : tail_mask(n - j);
    const __m512 value = _mm512_maskz_loadu_ps(valid, x + j);
    // Masked-off lanes divide by 1 so that no 0/0 is computed there.
    const __m512 column_divisor = _mm512_mask_loadu_ps(_mm512_set1_ps(1.f), valid, column_divisors + j);
    const __m512 quotient = _mm512_div_ps(_mm512_div_ps(value, row_divisor_v), column_divisor);
    const __m512 code = round_and_clamp(quotient, qmax_v, valid, counts);
    _mm512_mask_storeu_ps(x + j, valid, _mm512_mul_ps(_mm512_mul_ps(code, column_divisor), row_divisor_v));
  }
  return counts;
}

RowCounts quantize_row_cross_codes(const float* x, int64_t n, float row_divisor,
                                   const float* column_divisors, float qmax, int16_t* codes) {
  const __m512 row_divisor_v = _mm512_set1_ps(row_divisor);
  const __m512 qmax_v = _mm512_set1_ps(qmax);
  RowCounts counts;
  for (int64_t j = 0; j < n; j += kLanes) {
    const __mmask16 valid = n - j >= kLanes ? static_cast<__mmask16>(0xFFFF) : tail_mask(n - j);
    const __m512 value = _mm512_maskz_loadu_ps(valid, x + j);
    const __m512 column_divisor = _mm512_mask_loadu_ps(_mm512_set1_ps(1.f), valid, column_divisors + j);
    const __m512 quotient = _mm512_div_ps(_mm512_div_ps(value, row_divisor_v), column_divisor);
    store_codes(codes + j, round_and_clamp(quotient, qmax_v, valid, counts), valid);
  }
  return counts;
}

}  // namespace avx512
#endif  // __AVX512F__

}  // namespace cq::quant_kernels
