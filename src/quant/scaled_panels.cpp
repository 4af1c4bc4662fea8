#include "kernels/avx512.h"  // first: before anything that includes <immintrin.h>

#include "quant/scaled_panels.h"

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>

#include "kernels/gemm_int8.h"
#include "kernels/kernel_dispatch.h"
#include "quant/quant_common.h"

namespace cq {

namespace {
constexpr int64_t kPanel = kernels::PackedInt8Weights::kPanelWidth;  // 64 channels
constexpr int64_t kQuad = kernels::PackedInt8Weights::kQuad;         // 4 inputs
static_assert(kPanel == 64 && kQuad == 4, "the vector kernel below assumes 64-channel panels of 4-input quads");

int64_t padded(int64_t value, int64_t multiple) { return (std::max<int64_t>(value, 1) + multiple - 1) / multiple * multiple; }

// Index of W[64·panel + c][4·q + t] in the ordering.
inline int64_t ordered_index(int64_t k_padded, int64_t panel, int64_t q, int64_t c, int64_t t) {
  return panel * kPanel * k_padded + (q * kPanel + c) * kQuad + t;
}
}  // namespace

std::vector<float> order_as_int8_panels(const float* weight, int64_t out, int64_t in) {
  const int64_t k_padded = padded(in, kQuad), n_padded = padded(out, kPanel);
  std::vector<float> ordered(static_cast<size_t>(n_padded * k_padded), 0.f);
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < out; ++row) {
    const int64_t panel = row / kPanel, c = row % kPanel;
    for (int64_t j = 0; j < in; ++j)
      ordered[static_cast<size_t>(ordered_index(k_padded, panel, j / kQuad, c, j % kQuad))] = weight[row * in + j];
  }
  return ordered;
}

void row_of_int8_panel(const float* ordered, int64_t in, int64_t panel, int64_t r, float* row) {
  const int64_t k_padded = padded(in, kQuad);
  for (int64_t j = 0; j < in; ++j) row[j] = ordered[ordered_index(k_padded, panel, j / kQuad, r, j % kQuad)];
}

namespace scaled_panels_detail {

// The definition: the per-channel quantizer's arithmetic on each scaled row (quant/per_token.cpp
// and quant/row_kernels.h), visited in the packed order.
bool scalar_codes(const ScaledPanel& panel, int8_t* packed, int32_t* compensation, float* scales, float* absmax) {
  const float qmax = quant_detail::symmetric_qmax(panel.bits, "per-channel");
  const int64_t quads = panel.k_padded / kQuad;
  std::fill(absmax, absmax + kPanel, 0.f);
  for (int64_t q = 0; q < quads; ++q)
    for (int64_t c = 0; c < kPanel; ++c)
      for (int64_t t = 0; t < kQuad; ++t) {
        const float magnitude = std::fabs(panel.weight[(q * kPanel + c) * kQuad + t] * panel.factors[q * kQuad + t]);
        if (!(magnitude <= FLT_MAX)) return false;
        absmax[c] = std::max(absmax[c], magnitude);
      }
  int32_t sums[kPanel] = {};
  for (int64_t c = 0; c < kPanel; ++c) scales[c] = quant_detail::nonzero_divisor(absmax[c] / qmax);
  for (int64_t q = 0; q < quads; ++q)
    for (int64_t c = 0; c < kPanel; ++c)
      for (int64_t t = 0; t < kQuad; ++t) {
        const int64_t index = (q * kPanel + c) * kQuad + t;
        const float scaled = panel.weight[index] * panel.factors[q * kQuad + t];  // rounded, as the row path's scratch
        const float code = std::clamp(std::nearbyint(scaled / scales[c]), -qmax, qmax);
        packed[index] = static_cast<int8_t>(code);
        sums[c] += static_cast<int32_t>(code);
      }
  for (int64_t c = 0; c < kPanel; ++c) compensation[c] = 128 * sums[c];
  return true;
}

}  // namespace scaled_panels_detail

CQ_AVX512_BEGIN
namespace scaled_panels_detail {
// Named (not anonymous) so that an out-of-line copy carries "avx512" in its symbol, as
// scripts/check-portable-binary.sh expects of dispatched code.
namespace avx512_helpers {
constexpr int kLanes = 16;

inline __m512i magnitude_bits(__m512 v) {
  return _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7FFFFFFF));
}

// Every lane gets the maximum of its group of 4 (one channel's 4 inputs of a quad).
inline __m512i group_max(__m512i m) {
  m = _mm512_max_epu32(m, _mm512_shuffle_epi32(m, _MM_PERM_BADC));
  return _mm512_max_epu32(m, _mm512_shuffle_epi32(m, _MM_PERM_CDAB));
}

inline __m512 round_half_even(__m512 v) { return _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }

// round(v / Δ) as quant/row_kernels.cpp computes it: the product with 1/Δ where no lane can
// round differently from the true quotient, the exact division in the lanes where it could
// (divisors in [2^-60, 2^60]; else every lane divides).
inline __m512 rounded_quotient(__m512 value, __m512 divisor, __m512 reciprocal, bool use_reciprocal) {
  if (!use_reciprocal) return round_half_even(_mm512_div_ps(value, divisor));
  const __m512 product = _mm512_mul_ps(value, reciprocal);
  const __m512 rounded = round_half_even(product);
  const __m512 distance = _mm512_castsi512_ps(magnitude_bits(_mm512_sub_ps(product, rounded)));
  const __m512 tolerance = _mm512_fmadd_ps(_mm512_castsi512_ps(magnitude_bits(product)), _mm512_set1_ps(0x1p-20f),
                                           _mm512_set1_ps(0x1p-64f));
  const __mmask16 exact = _mm512_cmp_ps_mask(distance, _mm512_sub_ps(_mm512_set1_ps(0.5f), tolerance), _CMP_NLT_UQ);
  if (exact == 0) return rounded;
  return _mm512_mask_roundscale_ps(rounded, exact, _mm512_div_ps(value, divisor),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
}  // namespace avx512_helpers
using namespace avx512_helpers;

// 16 channels (one quarter of the panel) at a time, so that their scaled rows stay in L2
// between the maxima pass and the codes pass. Vector i of a quad's 64 floats holds channels
// 4i..4i+3 (of the 16) × inputs 4q..4q+3.
bool avx512_codes(const ScaledPanel& panel, int8_t* packed, int32_t* compensation, float* scales, float* absmax) {
  const float qmax = quant_detail::symmetric_qmax(panel.bits, "per-channel");
  const int64_t quads = panel.k_padded / kQuad;
  const __m512 qmax_v = _mm512_set1_ps(qmax);
  const __m512 minus_qmax_v = _mm512_set1_ps(-qmax);
  for (int64_t quarter = 0; quarter < kPanel / 16; ++quarter) {
    const float* weight = panel.weight + quarter * 16 * kQuad;
    __m512i max0 = _mm512_setzero_si512(), max1 = max0, max2 = max0, max3 = max0;
    for (int64_t q = 0; q < quads; ++q) {
      const float* w = weight + q * kPanel * kQuad;
      const __m512 f = _mm512_broadcast_f32x4(_mm_loadu_ps(panel.factors + q * kQuad));
      max0 = _mm512_max_epu32(max0, magnitude_bits(_mm512_mul_ps(_mm512_loadu_ps(w), f)));
      max1 = _mm512_max_epu32(max1, magnitude_bits(_mm512_mul_ps(_mm512_loadu_ps(w + kLanes), f)));
      max2 = _mm512_max_epu32(max2, magnitude_bits(_mm512_mul_ps(_mm512_loadu_ps(w + 2 * kLanes), f)));
      max3 = _mm512_max_epu32(max3, magnitude_bits(_mm512_mul_ps(_mm512_loadu_ps(w + 3 * kLanes), f)));
    }
    alignas(64) uint32_t bits[64];
    _mm512_store_si512(bits, group_max(max0));
    _mm512_store_si512(bits + 16, group_max(max1));
    _mm512_store_si512(bits + 32, group_max(max2));
    _mm512_store_si512(bits + 48, group_max(max3));
    alignas(64) float divisors[64], reciprocals[64];
    bool use_reciprocal = true;
    for (int64_t c = 0; c < 16; ++c) {
      const uint32_t b = bits[4 * c];
      if (b >= 0x7F800000u) return false;  // NaN or ±Inf (their patterns lie above every finite one)
      const int64_t channel = quarter * 16 + c;
      absmax[channel] = std::bit_cast<float>(b);
      scales[channel] = quant_detail::nonzero_divisor(absmax[channel] / qmax);
      use_reciprocal = use_reciprocal && scales[channel] >= 0x1p-60f && scales[channel] <= 0x1p60f;
      for (int64_t t = 0; t < 4; ++t) {
        divisors[4 * c + t] = scales[channel];
        reciprocals[4 * c + t] = 1.f / scales[channel];
      }
    }
    const __m512 d0 = _mm512_load_ps(divisors), d1 = _mm512_load_ps(divisors + 16), d2 = _mm512_load_ps(divisors + 32),
                 d3 = _mm512_load_ps(divisors + 48);
    const __m512 r0 = _mm512_load_ps(reciprocals), r1 = _mm512_load_ps(reciprocals + 16),
                 r2 = _mm512_load_ps(reciprocals + 32), r3 = _mm512_load_ps(reciprocals + 48);
    __m512i sum0 = _mm512_setzero_si512(), sum1 = sum0, sum2 = sum0, sum3 = sum0;
    int8_t* out = packed + quarter * 16 * kQuad;
    auto codes = [&](__m512 scaled, __m512 d, __m512 r, __m512i& sum, int8_t* dst) {
      const __m512 code =
          _mm512_min_ps(_mm512_max_ps(rounded_quotient(scaled, d, r, use_reciprocal), minus_qmax_v), qmax_v);
      const __m512i integer = _mm512_cvtps_epi32(code);
      sum = _mm512_add_epi32(sum, integer);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm512_cvtepi32_epi8(integer));
    };
    for (int64_t q = 0; q < quads; ++q) {
      const float* w = weight + q * kPanel * kQuad;
      int8_t* dst = out + q * kPanel * kQuad;
      const __m512 f = _mm512_broadcast_f32x4(_mm_loadu_ps(panel.factors + q * kQuad));
      codes(_mm512_mul_ps(_mm512_loadu_ps(w), f), d0, r0, sum0, dst);
      codes(_mm512_mul_ps(_mm512_loadu_ps(w + kLanes), f), d1, r1, sum1, dst + kLanes);
      codes(_mm512_mul_ps(_mm512_loadu_ps(w + 2 * kLanes), f), d2, r2, sum2, dst + 2 * kLanes);
      codes(_mm512_mul_ps(_mm512_loadu_ps(w + 3 * kLanes), f), d3, r3, sum3, dst + 3 * kLanes);
    }
    alignas(64) int32_t sums[64];
    _mm512_store_si512(sums, sum0);
    _mm512_store_si512(sums + 16, sum1);
    _mm512_store_si512(sums + 32, sum2);
    _mm512_store_si512(sums + 48, sum3);
    for (int64_t c = 0; c < 16; ++c)
      compensation[quarter * 16 + c] = 128 * (sums[4 * c] + sums[4 * c + 1] + sums[4 * c + 2] + sums[4 * c + 3]);
  }
  return true;
}
}  // namespace scaled_panels_detail
CQ_AVX512_END

bool per_channel_codes_of_scaled_panel(const ScaledPanel& panel, int8_t* packed, int32_t* compensation, float* scales,
                                       float* absmax) {
  return kernels::avx512_kernels()
             ? scaled_panels_detail::avx512_codes(panel, packed, compensation, scales, absmax)
             : scaled_panels_detail::scalar_codes(panel, packed, compensation, scales, absmax);
}

}  // namespace cq
