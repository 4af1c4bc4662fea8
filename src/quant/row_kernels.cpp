#include "quant/row_kernels.h"

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>

#include "kernels/avx512.h"

namespace cq::quant_kernels {

namespace {
// Divisors in [2^-60, 2^60] keep every product with a reciprocal away from overflow and
// from the subnormal range where relative error bounds fail (see the AVX-512 kernels).
constexpr float kReciprocalRangeLimit = 0x1p60f;
inline bool reciprocal_safe(float divisor) {
  return divisor >= 1.f / kReciprocalRangeLimit && divisor <= kReciprocalRangeLimit;
}
}  // namespace

std::vector<float> reciprocals_for(const std::vector<float>& divisors) {
  std::vector<float> reciprocals(divisors.size());
  for (size_t j = 0; j < divisors.size(); ++j) {
    if (!reciprocal_safe(divisors[j])) return {};
    reciprocals[j] = 1.f / divisors[j];
  }
  return reciprocals;
}

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

RowCounts fake_quantize_row_cross(float* x, int64_t n, float row_divisor, const float* column_divisors,
                                  const float* /*column_reciprocals*/, float qmax) {
  RowCounts counts;
  for (int64_t j = 0; j < n; ++j) {
    const float code = round_and_clamp(x[j] / row_divisor / column_divisors[j], qmax, counts);
    x[j] = code * column_divisors[j] * row_divisor;
  }
  return counts;
}

RowCounts quantize_row_cross_codes(const float* x, int64_t n, float row_divisor, const float* column_divisors,
                                   const float* /*column_reciprocals*/, float qmax, int16_t* codes) {
  RowCounts counts;
  for (int64_t j = 0; j < n; ++j)
    codes[j] = static_cast<int16_t>(
        round_and_clamp(x[j] / row_divisor / column_divisors[j], qmax, counts));
  return counts;
}

RowCounts fake_quantize_row_pair_cross(float* x0, float* x1, int64_t n, float row_divisor0, float row_divisor1,
                                       const float* column_divisors, const float* column_reciprocals, float qmax) {
  RowCounts counts = fake_quantize_row_cross(x0, n, row_divisor0, column_divisors, column_reciprocals, qmax);
  counts += fake_quantize_row_cross(x1, n, row_divisor1, column_divisors, column_reciprocals, qmax);
  return counts;
}

RowCounts quantize_row_pair_cross_codes(const float* x0, const float* x1, int64_t n, float row_divisor0,
                                        float row_divisor1, const float* column_divisors,
                                        const float* column_reciprocals, float qmax, int16_t* codes0,
                                        int16_t* codes1) {
  RowCounts counts = quantize_row_cross_codes(x0, n, row_divisor0, column_divisors, column_reciprocals, qmax, codes0);
  counts += quantize_row_cross_codes(x1, n, row_divisor1, column_divisors, column_reciprocals, qmax, codes1);
  return counts;
}

}  // namespace scalar

CQ_AVX512_BEGIN
namespace avx512 {

namespace {
constexpr int kLanes = 16;

inline __mmask16 lanes_left(int64_t n, int64_t j) {
  return n - j >= kLanes ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (n - j)) - 1u);
}

// |v| by clearing the sign bit (GCC 12's _mm512_abs_ps trips -Wmaybe-uninitialized).
inline __m512i magnitude_bits(__m512i bits) { return _mm512_and_si512(bits, _mm512_set1_epi32(0x7FFFFFFF)); }
inline __m512 absolute(__m512 v) { return _mm512_castsi512_ps(magnitude_bits(_mm512_castps_si512(v))); }

// Per-lane counters (one masked add per vector instead of a popcount on the scalar side).
// (The constructor is written out: an implicit one would not be compiled for AVX-512.)
struct LaneCounts {
  __m512i kernel;
  __m512i clipped;
  LaneCounts() : kernel(_mm512_setzero_si512()), clipped(_mm512_setzero_si512()) {}
  void add(__mmask16 kernel_lanes, __mmask16 clipped_lanes) {
    const __m512i one = _mm512_set1_epi32(1);
    kernel = _mm512_mask_add_epi32(kernel, kernel_lanes, kernel, one);
    clipped = _mm512_mask_add_epi32(clipped, clipped_lanes, clipped, one);
  }
  RowCounts total() const { return {_mm512_reduce_add_epi32(kernel), _mm512_reduce_add_epi32(clipped)}; }
};

// The divisions x / Δ (or x / row / column) decide codes only through round(). They are
// computed first as products with reciprocals, which is within 8 units of float rounding
// (u = 2^-24) of the divided quotient, relative, when the divisors lie in [2^-60, 2^60].
// Where no lane is within 16u·|y| + 2^-64 of a half-integer, round() of both is the same;
// otherwise (or for NaN/Inf products) those lanes are divided exactly as the scalar reference
// does. Codes thus equal the scalar ones bit for bit at a fraction of the division cost.

inline __mmask16 needs_exact_division(__m512 product, __m512 rounded) {
  const __m512 distance = absolute(_mm512_sub_ps(product, rounded));
  const __m512 tolerance = _mm512_fmadd_ps(absolute(product), _mm512_set1_ps(0x1p-20f), _mm512_set1_ps(0x1p-64f));
  // Ordered compare: a NaN (from an Inf product) counts as unsafe too.
  return _mm512_cmp_ps_mask(distance, _mm512_sub_ps(_mm512_set1_ps(0.5f), tolerance), _CMP_NLT_UQ);
}

inline __m512 round_half_even(__m512 v) {
  return _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

// round(x / divisor), or round(x / row_divisor / column_divisor) with column_divisor given.
inline __m512 rounded_quotient(__m512 value, __m512 divisor, __m512 reciprocal, bool use_reciprocal) {
  if (use_reciprocal) {
    const __m512 product = _mm512_mul_ps(value, reciprocal);
    const __m512 rounded = round_half_even(product);
    const __mmask16 exact = needs_exact_division(product, rounded);
    if (exact == 0) return rounded;
    return _mm512_mask_roundscale_ps(rounded, exact, _mm512_div_ps(value, divisor),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  return round_half_even(_mm512_div_ps(value, divisor));
}

inline __m512 rounded_cross_quotient(__m512 value, __m512 row_divisor, __m512 column_divisor,
                                     __m512 row_reciprocal, __m512 column_reciprocal, bool use_reciprocal) {
  if (use_reciprocal) {
    const __m512 product = _mm512_mul_ps(_mm512_mul_ps(value, row_reciprocal), column_reciprocal);
    const __m512 rounded = round_half_even(product);
    const __mmask16 exact = needs_exact_division(product, rounded);
    if (exact == 0) return rounded;
    return _mm512_mask_roundscale_ps(rounded, exact,
                                     _mm512_div_ps(_mm512_div_ps(value, row_divisor), column_divisor),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  return round_half_even(_mm512_div_ps(_mm512_div_ps(value, row_divisor), column_divisor));
}

// Clamp to ±qmax and count, as scalar::round_and_clamp; `valid` masks off a tail's lanes.
inline __m512 clamp_and_count(__m512 code, __m512 qmax, __mmask16 valid, LaneCounts& counts) {
  const __mmask16 clipped = _mm512_mask_cmp_ps_mask(valid, absolute(code), qmax, _CMP_GT_OQ);
  const __m512 clamped = _mm512_min_ps(_mm512_max_ps(code, _mm512_sub_ps(_mm512_setzero_ps(), qmax)), qmax);
  counts.add(_mm512_mask_cmp_ps_mask(valid, clamped, _mm512_setzero_ps(), _CMP_EQ_OQ), clipped);
  return clamped;
}

// The quantize loops run body.template operator()<Full>(j, valid) over a row's 16-lane
// vectors: whole vectors with Full = true, whose loads and stores are plain (Zen 4 runs the
// masked forms as extra uops), then the tail with Full = false, masked by `valid`.
template <typename Body>
inline void for_each_vector(int64_t n, Body&& body) {
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) body.template operator()<true>(j, static_cast<__mmask16>(0xFFFF));
  if (j < n) body.template operator()<false>(j, lanes_left(n, j));
}

template <bool Full>
inline __m512 load_or_zero(const float* p, __mmask16 valid) {
  if constexpr (Full) return _mm512_loadu_ps(p);
  else return _mm512_maskz_loadu_ps(valid, p);
}

// Masked-off lanes read 1, so that no 0/0 is computed there.
template <bool Full>
inline __m512 load_or_one(const float* p, __mmask16 valid) {
  if constexpr (Full) return _mm512_loadu_ps(p);
  else return _mm512_mask_loadu_ps(_mm512_set1_ps(1.f), valid, p);
}

template <bool Full>
inline void store_values(float* p, __m512 v, __mmask16 valid) {
  if constexpr (Full) _mm512_storeu_ps(p, v);
  else _mm512_mask_storeu_ps(p, valid, v);
}

template <bool Full>
inline void store_codes(int16_t* codes, __m512 code, __mmask16 valid) {
  if constexpr (Full) _mm256_storeu_si256(reinterpret_cast<__m256i*>(codes), _mm512_cvtsepi32_epi16(_mm512_cvtps_epi32(code)));
  else _mm512_mask_cvtsepi32_storeu_epi16(codes, valid, _mm512_cvtps_epi32(code));
}

}  // namespace

RowScan scan_row(const float* x, int64_t n, float* column_absmax) {
  // Non-negative floats order like their bit patterns, and NaN/Inf patterns lie above every
  // finite one: an integer max gives max|x| and the finiteness check in one instruction.
  __m512i absmax0 = _mm512_setzero_si512();
  __m512i absmax1 = _mm512_setzero_si512();
  __m512i zeros = _mm512_setzero_si512();
  const __m512i one = _mm512_set1_epi32(1);
  int64_t j = 0;
  for (; j + 2 * kLanes <= n; j += 2 * kLanes) {
    const __m512i a = magnitude_bits(_mm512_loadu_si512(x + j));
    const __m512i b = magnitude_bits(_mm512_loadu_si512(x + j + kLanes));
    absmax0 = _mm512_max_epu32(absmax0, a);
    absmax1 = _mm512_max_epu32(absmax1, b);
    zeros = _mm512_mask_add_epi32(zeros, _mm512_testn_epi32_mask(a, a), zeros, one);
    zeros = _mm512_mask_add_epi32(zeros, _mm512_testn_epi32_mask(b, b), zeros, one);
    if (column_absmax != nullptr) {
      _mm512_storeu_si512(column_absmax + j, _mm512_max_epu32(_mm512_loadu_si512(column_absmax + j), a));
      _mm512_storeu_si512(column_absmax + j + kLanes,
                          _mm512_max_epu32(_mm512_loadu_si512(column_absmax + j + kLanes), b));
    }
  }
  for (; j < n; j += kLanes) {
    const __mmask16 valid = lanes_left(n, j);
    const __m512i a = magnitude_bits(_mm512_maskz_loadu_epi32(valid, x + j));
    absmax0 = _mm512_max_epu32(absmax0, a);
    zeros = _mm512_mask_add_epi32(zeros, _mm512_mask_testn_epi32_mask(valid, a, a), zeros, one);
    if (column_absmax != nullptr) {
      const __m512i column = _mm512_maskz_loadu_epi32(valid, column_absmax + j);
      _mm512_mask_storeu_epi32(column_absmax + j, valid, _mm512_max_epu32(column, a));
    }
  }
  const auto absmax_bits = static_cast<uint32_t>(_mm512_reduce_max_epu32(_mm512_max_epu32(absmax0, absmax1)));
  RowScan scan;
  scan.absmax = std::bit_cast<float>(absmax_bits);
  scan.exact_zeros = _mm512_reduce_add_epi32(zeros);
  scan.finite = absmax_bits < 0x7F800000u;  // below +Inf's pattern
  if (!scan.finite) scan.absmax = 0.f;
  return scan;
}

RowCounts fake_quantize_row(float* x, int64_t n, float divisor, float qmax) {
  const __m512 divisor_v = _mm512_set1_ps(divisor);
  const __m512 reciprocal_v = _mm512_set1_ps(1.f / divisor);
  const bool use_reciprocal = reciprocal_safe(divisor);
  const __m512 qmax_v = _mm512_set1_ps(qmax);
  LaneCounts counts;
  for_each_vector(n, [&]<bool Full>(int64_t j, __mmask16 valid) {
    const __m512 value = load_or_zero<Full>(x + j, valid);
    const __m512 code =
        clamp_and_count(rounded_quotient(value, divisor_v, reciprocal_v, use_reciprocal), qmax_v, valid, counts);
    store_values<Full>(x + j, _mm512_mul_ps(code, divisor_v), valid);
  });
  return counts.total();
}

RowCounts quantize_row_codes(const float* x, int64_t n, float divisor, float qmax, int16_t* codes) {
  const __m512 divisor_v = _mm512_set1_ps(divisor);
  const __m512 reciprocal_v = _mm512_set1_ps(1.f / divisor);
  const bool use_reciprocal = reciprocal_safe(divisor);
  const __m512 qmax_v = _mm512_set1_ps(qmax);
  LaneCounts counts;
  for_each_vector(n, [&]<bool Full>(int64_t j, __mmask16 valid) {
    const __m512 value = load_or_zero<Full>(x + j, valid);
    store_codes<Full>(
        codes + j,
        clamp_and_count(rounded_quotient(value, divisor_v, reciprocal_v, use_reciprocal), qmax_v, valid, counts),
        valid);
  });
  return counts.total();
}

namespace {
// round(x_j / row_divisor / column_divisor_j) for the vector at j, clamped and counted.
// UseReciprocal is a template argument so that each row's loop carries no branch on it.
template <bool Full, bool UseReciprocal>
inline __m512 cross_code(const float* x, int64_t j, __mmask16 valid, __m512 row_divisor, __m512 row_reciprocal,
                         const float* column_divisors, const float* column_reciprocals, __m512 qmax,
                         LaneCounts& counts, __m512& column_divisor) {
  const __m512 value = load_or_zero<Full>(x + j, valid);
  column_divisor = load_or_one<Full>(column_divisors + j, valid);
  const __m512 column_reciprocal =
      UseReciprocal ? load_or_one<Full>(column_reciprocals + j, valid) : _mm512_set1_ps(1.f);
  return clamp_and_count(rounded_cross_quotient(value, row_divisor, column_divisor, row_reciprocal, column_reciprocal,
                                                UseReciprocal),
                         qmax, valid, counts);
}

template <bool UseReciprocal>
RowCounts fake_quantize_row_cross_loop(float* x, int64_t n, float row_divisor, const float* column_divisors,
                                       const float* column_reciprocals, float qmax) {
  const __m512 row_divisor_v = _mm512_set1_ps(row_divisor);
  const __m512 row_reciprocal_v = _mm512_set1_ps(1.f / row_divisor);
  const __m512 qmax_v = _mm512_set1_ps(qmax);
  LaneCounts counts;
  for_each_vector(n, [&]<bool Full>(int64_t j, __mmask16 valid) {
    __m512 column_divisor;
    const __m512 code = cross_code<Full, UseReciprocal>(x, j, valid, row_divisor_v, row_reciprocal_v, column_divisors,
                                                        column_reciprocals, qmax_v, counts, column_divisor);
    store_values<Full>(x + j, _mm512_mul_ps(_mm512_mul_ps(code, column_divisor), row_divisor_v), valid);
  });
  return counts.total();
}

// Two rows in one sweep: each column's divisor and reciprocal are loaded once for both. The
// fake and codes forms are written out separately on purpose: one shared loop calling a
// per-row store measured ~10 % slower (bench_quant), as the two rows' work stopped interleaving.
template <bool UseReciprocal>
RowCounts fake_quantize_row_pair_cross_loop(float* x0, float* x1, int64_t n, float row_divisor0, float row_divisor1,
                                            const float* column_divisors, const float* column_reciprocals,
                                            float qmax) {
  const __m512 row_divisor0_v = _mm512_set1_ps(row_divisor0), row_divisor1_v = _mm512_set1_ps(row_divisor1);
  const __m512 row_reciprocal0_v = _mm512_set1_ps(1.f / row_divisor0);
  const __m512 row_reciprocal1_v = _mm512_set1_ps(1.f / row_divisor1);
  const __m512 qmax_v = _mm512_set1_ps(qmax);
  LaneCounts counts;
  for_each_vector(n, [&]<bool Full>(int64_t j, __mmask16 valid) {
    const __m512 column_divisor = load_or_one<Full>(column_divisors + j, valid);
    const __m512 column_reciprocal =
        UseReciprocal ? load_or_one<Full>(column_reciprocals + j, valid) : _mm512_set1_ps(1.f);
    const __m512 value0 = load_or_zero<Full>(x0 + j, valid);
    const __m512 value1 = load_or_zero<Full>(x1 + j, valid);
    const __m512 code0 = clamp_and_count(rounded_cross_quotient(value0, row_divisor0_v, column_divisor,
                                                                row_reciprocal0_v, column_reciprocal, UseReciprocal),
                                         qmax_v, valid, counts);
    const __m512 code1 = clamp_and_count(rounded_cross_quotient(value1, row_divisor1_v, column_divisor,
                                                                row_reciprocal1_v, column_reciprocal, UseReciprocal),
                                         qmax_v, valid, counts);
    store_values<Full>(x0 + j, _mm512_mul_ps(_mm512_mul_ps(code0, column_divisor), row_divisor0_v), valid);
    store_values<Full>(x1 + j, _mm512_mul_ps(_mm512_mul_ps(code1, column_divisor), row_divisor1_v), valid);
  });
  return counts.total();
}

template <bool UseReciprocal>
RowCounts quantize_row_pair_cross_codes_loop(const float* x0, const float* x1, int64_t n, float row_divisor0,
                                             float row_divisor1, const float* column_divisors,
                                             const float* column_reciprocals, float qmax, int16_t* codes0,
                                             int16_t* codes1) {
  const __m512 row_divisor0_v = _mm512_set1_ps(row_divisor0), row_divisor1_v = _mm512_set1_ps(row_divisor1);
  const __m512 row_reciprocal0_v = _mm512_set1_ps(1.f / row_divisor0);
  const __m512 row_reciprocal1_v = _mm512_set1_ps(1.f / row_divisor1);
  const __m512 qmax_v = _mm512_set1_ps(qmax);
  LaneCounts counts;
  for_each_vector(n, [&]<bool Full>(int64_t j, __mmask16 valid) {
    const __m512 column_divisor = load_or_one<Full>(column_divisors + j, valid);
    const __m512 column_reciprocal =
        UseReciprocal ? load_or_one<Full>(column_reciprocals + j, valid) : _mm512_set1_ps(1.f);
    const __m512 value0 = load_or_zero<Full>(x0 + j, valid);
    const __m512 value1 = load_or_zero<Full>(x1 + j, valid);
    store_codes<Full>(codes0 + j,
                      clamp_and_count(rounded_cross_quotient(value0, row_divisor0_v, column_divisor, row_reciprocal0_v,
                                                             column_reciprocal, UseReciprocal),
                                      qmax_v, valid, counts),
                      valid);
    store_codes<Full>(codes1 + j,
                      clamp_and_count(rounded_cross_quotient(value1, row_divisor1_v, column_divisor, row_reciprocal1_v,
                                                             column_reciprocal, UseReciprocal),
                                      qmax_v, valid, counts),
                      valid);
  });
  return counts.total();
}

template <bool UseReciprocal>
RowCounts quantize_row_cross_codes_loop(const float* x, int64_t n, float row_divisor, const float* column_divisors,
                                        const float* column_reciprocals, float qmax, int16_t* codes) {
  const __m512 row_divisor_v = _mm512_set1_ps(row_divisor);
  const __m512 row_reciprocal_v = _mm512_set1_ps(1.f / row_divisor);
  const __m512 qmax_v = _mm512_set1_ps(qmax);
  LaneCounts counts;
  for_each_vector(n, [&]<bool Full>(int64_t j, __mmask16 valid) {
    __m512 column_divisor;
    store_codes<Full>(codes + j,
                      cross_code<Full, UseReciprocal>(x, j, valid, row_divisor_v, row_reciprocal_v, column_divisors,
                                                      column_reciprocals, qmax_v, counts, column_divisor),
                      valid);
  });
  return counts.total();
}
}  // namespace

RowCounts fake_quantize_row_cross(float* x, int64_t n, float row_divisor, const float* column_divisors,
                                  const float* column_reciprocals, float qmax) {
  if (column_reciprocals != nullptr && reciprocal_safe(row_divisor))
    return fake_quantize_row_cross_loop<true>(x, n, row_divisor, column_divisors, column_reciprocals, qmax);
  return fake_quantize_row_cross_loop<false>(x, n, row_divisor, column_divisors, column_reciprocals, qmax);
}

RowCounts fake_quantize_row_pair_cross(float* x0, float* x1, int64_t n, float row_divisor0, float row_divisor1,
                                       const float* column_divisors, const float* column_reciprocals, float qmax) {
  if (column_reciprocals != nullptr && reciprocal_safe(row_divisor0) && reciprocal_safe(row_divisor1))
    return fake_quantize_row_pair_cross_loop<true>(x0, x1, n, row_divisor0, row_divisor1, column_divisors,
                                                   column_reciprocals, qmax);
  return fake_quantize_row_pair_cross_loop<false>(x0, x1, n, row_divisor0, row_divisor1, column_divisors,
                                                  column_reciprocals, qmax);
}

RowCounts quantize_row_pair_cross_codes(const float* x0, const float* x1, int64_t n, float row_divisor0,
                                        float row_divisor1, const float* column_divisors,
                                        const float* column_reciprocals, float qmax, int16_t* codes0,
                                        int16_t* codes1) {
  if (column_reciprocals != nullptr && reciprocal_safe(row_divisor0) && reciprocal_safe(row_divisor1))
    return quantize_row_pair_cross_codes_loop<true>(x0, x1, n, row_divisor0, row_divisor1, column_divisors,
                                                    column_reciprocals, qmax, codes0, codes1);
  return quantize_row_pair_cross_codes_loop<false>(x0, x1, n, row_divisor0, row_divisor1, column_divisors,
                                                   column_reciprocals, qmax, codes0, codes1);
}

RowCounts quantize_row_cross_codes(const float* x, int64_t n, float row_divisor, const float* column_divisors,
                                   const float* column_reciprocals, float qmax, int16_t* codes) {
  if (column_reciprocals != nullptr && reciprocal_safe(row_divisor))
    return quantize_row_cross_codes_loop<true>(x, n, row_divisor, column_divisors, column_reciprocals, qmax, codes);
  return quantize_row_cross_codes_loop<false>(x, n, row_divisor, column_divisors, column_reciprocals, qmax, codes);
}

}  // namespace avx512
CQ_AVX512_END

}  // namespace cq::quant_kernels
