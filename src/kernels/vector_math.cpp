#include "kernels/vector_math.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/kernel_dispatch.h"
#include "kernels/simd_horizontal.h"

namespace cq::kernels {

namespace scalar {

void softmax_inplace(float* row, int64_t n) {
  float max_value = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j) max_value = std::max(max_value, row[j]);
  float sum = 0;
  for (int64_t j = 0; j < n; ++j) {
    row[j] = std::exp(row[j] - max_value);
    sum += row[j];
  }
  const float inverse = 1.f / sum;
  for (int64_t j = 0; j < n; ++j) row[j] *= inverse;
}

void silu_multiply(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.f + std::exp(-g)) * up[i];
  }
}

double sum_exp_shifted(const float* x, int64_t n, float shift) {
  double sum = 0;
  for (int64_t j = 0; j < n; ++j) sum += std::exp(static_cast<double>(x[j]) - static_cast<double>(shift));
  return sum;
}

}  // namespace scalar

CQ_AVX512_BEGIN
namespace avx512 {
namespace {

using simd::horizontal_max;
using simd::horizontal_sum;
constexpr int kLanes = 16;

inline __mmask16 lanes_left(int64_t n, int64_t j) {
  return n - j >= kLanes ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (n - j)) - 1u);
}

// exp(x): x = k·ln2 + r with |r| <= ln2/2 (ln2 split in two for an exact-enough r), a
// degree-7 polynomial for exp(r) (Taylor-like minimax coefficients, relative error ~1e-7),
// then 2^k applied with vscalefps, which saturates to +inf above and flushes to 0 below.
inline __m512 exp_ps(__m512 x) {
  const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
  const __m512 ln2_hi = _mm512_set1_ps(0.693359375f);
  const __m512 ln2_lo = _mm512_set1_ps(-2.12194440e-4f);
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.f));  // below that exp is 0 in float anyway
  x = _mm512_min_ps(x, _mm512_set1_ps(89.f));
  const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(k, ln2_hi, x);
  r = _mm512_fnmadd_ps(k, ln2_lo, r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  return _mm512_scalef_ps(p, k);
}

}  // namespace

void softmax_inplace(float* row, int64_t n) {
  const __m512 minus_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512 max_v = minus_inf;
  for (int64_t j = 0; j < n; j += kLanes) max_v = _mm512_max_ps(max_v, _mm512_mask_loadu_ps(minus_inf, lanes_left(n, j), row + j));
  const __m512 shift = _mm512_set1_ps(horizontal_max(max_v));
  __m512 sum_v = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += kLanes) {
    const __mmask16 valid = lanes_left(n, j);
    const __m512 e = exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(valid, row + j), shift));
    _mm512_mask_storeu_ps(row + j, valid, e);
    sum_v = _mm512_add_ps(sum_v, _mm512_maskz_mov_ps(valid, e));
  }
  const __m512 inverse = _mm512_set1_ps(1.f / horizontal_sum(sum_v));
  for (int64_t j = 0; j < n; j += kLanes) {
    const __mmask16 valid = lanes_left(n, j);
    _mm512_mask_storeu_ps(row + j, valid, _mm512_mul_ps(_mm512_maskz_loadu_ps(valid, row + j), inverse));
  }
}

void silu_multiply(const float* gate, const float* up, float* out, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.f);
  for (int64_t i = 0; i < n; i += kLanes) {
    const __mmask16 valid = lanes_left(n, i);
    const __m512 g = _mm512_maskz_loadu_ps(valid, gate + i);
    const __m512 sigmoid_denominator = _mm512_add_ps(one, exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), g)));
    _mm512_mask_storeu_ps(out + i, valid,
                          _mm512_mul_ps(_mm512_div_ps(g, sigmoid_denominator), _mm512_maskz_loadu_ps(valid, up + i)));
  }
}

double sum_exp_shifted(const float* x, int64_t n, float shift) {
  // Each exp in float (~1e-7 relative), the sum in double: log-sum-exp to ~1e-7.
  const __m512 shift_v = _mm512_set1_ps(shift);
  __m512d sum_lo = _mm512_setzero_pd(), sum_hi = _mm512_setzero_pd();
  for (int64_t j = 0; j < n; j += kLanes) {
    const __mmask16 valid = lanes_left(n, j);
    const __m512 e = _mm512_maskz_mov_ps(valid, exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(valid, x + j), shift_v)));
    sum_lo = _mm512_add_pd(sum_lo, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
    sum_hi = _mm512_add_pd(sum_hi, _mm512_cvtps_pd(_mm512_castps512_ps256(_mm512_shuffle_f32x4(e, e, 0xEE))));
  }
  return horizontal_sum(_mm512_add_pd(sum_lo, sum_hi));
}

}  // namespace avx512
CQ_AVX512_END

void softmax_inplace(float* row, int64_t n) {
  if (avx512_kernels()) avx512::softmax_inplace(row, n);
  else scalar::softmax_inplace(row, n);
}
void silu_multiply(const float* gate, const float* up, float* out, int64_t n) {
  if (avx512_kernels()) avx512::silu_multiply(gate, up, out, n);
  else scalar::silu_multiply(gate, up, out, n);
}
double sum_exp_shifted(const float* x, int64_t n, float shift) {
  return avx512_kernels() ? avx512::sum_exp_shifted(x, n, shift) : scalar::sum_exp_shifted(x, n, shift);
}

void gelu_tanh_multiply(const float* gate, const float* up, float* out, int64_t n) {
  constexpr float kSqrtTwoOverPi = 0.7978845608028654f;
  for (int64_t i = 0; i < n; ++i) {
    const float x = gate[i];
    out[i] = 0.5f * x * (1.f + std::tanh(kSqrtTwoOverPi * (x + 0.044715f * x * x * x))) * up[i];
  }
}

}  // namespace cq::kernels
