#include "kernels/normalization.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "kernels/avx512.h"
#include "kernels/column_absmax.h"
#include "kernels/kernel_dispatch.h"

namespace cq::kernels {

namespace {

// Σ_j term(x_j) in double over 16 independent partial sums: a single running sum would
// wait on each add's latency (4 cycles per element, 10 ms for a 2048 x 4096 LayerNorm);
// 16 lanes let the compiler keep two vector accumulators in flight.
template <typename Term>
double sum_in_double(const float* x, int64_t n, Term&& term) {
  constexpr int kPartials = 16;
  double partial[kPartials] = {};
  int64_t j = 0;
  for (; j + kPartials <= n; j += kPartials)
    for (int k = 0; k < kPartials; ++k) partial[k] += term(static_cast<double>(x[j + k]));
  for (int k = 0; j < n; ++j, ++k) partial[k] += term(static_cast<double>(x[j]));
  double sum = 0;
  for (const double value : partial) sum += value;
  return sum;
}

// Both norms are out_ij = ((in_ij − shift_i) · scale_i) · weight_j + bias_j (RMSNorm: shift
// and bias 0, computed without them). Up to kGroup rows are written in one sweep over j, so
// that weight, bias and the column maxima are loaded once per group; the same code runs with
// and without gathering, so the outputs never depend on it.
constexpr int64_t kGroup = 4;

struct RowFactors {
  float shift[kGroup] = {};
  float scale[kGroup] = {};
};

inline float normalized(float x, float shift, float scale, float weight, const float* bias, int64_t j) {
  return bias != nullptr ? (x - shift) * scale * weight + bias[j] : weight * (x * scale);
}

inline void raise_maximum(float* column_absmax, int64_t j, float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value) & 0x7FFFFFFFu;
  if (bits > std::bit_cast<uint32_t>(column_absmax[j])) column_absmax[j] = std::bit_cast<float>(bits);
}

}  // namespace

CQ_AVX512_BEGIN
namespace {
// write_group's whole 16-column vectors; returns the first column left for the scalar tail.
template <int64_t Rows>
int64_t write_group_vectors_avx512(const float* in, float* out, int64_t n, const RowFactors& factors,
                                   const float* weight, const float* bias, float* column_absmax) {
  int64_t j = 0;
  const __m512i magnitude = _mm512_set1_epi32(0x7FFFFFFF);
  for (; j + 16 <= n; j += 16) {
    const __m512 w = _mm512_loadu_ps(weight + j);
    const __m512 b = bias != nullptr ? _mm512_loadu_ps(bias + j) : _mm512_setzero_ps();
    __m512i maximum = column_absmax != nullptr ? _mm512_loadu_si512(column_absmax + j) : _mm512_setzero_si512();
    for (int64_t r = 0; r < Rows; ++r) {
      const __m512 x = _mm512_loadu_ps(in + r * n + j);
      const __m512 y =
          bias != nullptr
              ? _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(_mm512_sub_ps(x, _mm512_set1_ps(factors.shift[r])),
                                                          _mm512_set1_ps(factors.scale[r])),
                                            w),
                              b)
              : _mm512_mul_ps(w, _mm512_mul_ps(x, _mm512_set1_ps(factors.scale[r])));
      _mm512_storeu_ps(out + r * n + j, y);
      maximum = _mm512_max_epu32(maximum, _mm512_and_si512(_mm512_castps_si512(y), magnitude));
    }
    if (column_absmax != nullptr) _mm512_storeu_si512(column_absmax + j, maximum);
  }
  return j;
}
}  // namespace
CQ_AVX512_END

namespace {

// Rows of one group; the AVX-512 version (when `vectors`) takes the whole 16-column vectors,
// the portable loop the rest.
template <int64_t Rows>
void write_group(const float* in, float* out, int64_t n, const RowFactors& factors, const float* weight,
                 const float* bias, float* column_absmax, bool vectors) {
  const int64_t first =
      vectors ? write_group_vectors_avx512<Rows>(in, out, n, factors, weight, bias, column_absmax) : 0;
  for (int64_t j = first; j < n; ++j)
    for (int64_t r = 0; r < Rows; ++r) {
      const float y = normalized(in[r * n + j], factors.shift[r], factors.scale[r], weight[j], bias, j);
      out[r * n + j] = y;
      if (column_absmax != nullptr) raise_maximum(column_absmax, j, y);
    }
}

template <typename Factors>
void normalize_rows(const float* in, float* out, int64_t rows, int64_t n, const float* weight, const float* bias,
                    float* column_absmax, Factors&& factors_of) {
  const bool vectors = avx512_kernels();
  for (int64_t begin = 0; begin < rows; begin += kGroup) {
    const int64_t count = std::min(kGroup, rows - begin);
    RowFactors factors;
    for (int64_t r = 0; r < count; ++r) factors_of(in + (begin + r) * n, factors.shift[r], factors.scale[r]);
    const float* group_in = in + begin * n;
    float* group_out = out + begin * n;
    switch (count) {
      case 4: write_group<4>(group_in, group_out, n, factors, weight, bias, column_absmax, vectors); break;
      case 3: write_group<3>(group_in, group_out, n, factors, weight, bias, column_absmax, vectors); break;
      case 2: write_group<2>(group_in, group_out, n, factors, weight, bias, column_absmax, vectors); break;
      default: write_group<1>(group_in, group_out, n, factors, weight, bias, column_absmax, vectors); break;
    }
  }
}

}  // namespace

void layer_norm_rows(const float* in, float* out, int64_t rows, int64_t n, const float* weight, const float* bias,
                     double eps, float* column_absmax) {
  normalize_rows(in, out, rows, n, weight, bias, column_absmax, [n, eps](const float* row, float& shift, float& scale) {
    const double mean = sum_in_double(row, n, [](double v) { return v; }) / static_cast<double>(n);
    const double squares = sum_in_double(row, n, [mean](double v) { return (v - mean) * (v - mean); });
    scale = static_cast<float>(1.0 / std::sqrt(squares / static_cast<double>(n) + eps));
    shift = static_cast<float>(mean);
  });
}

void rms_norm_rows(const float* in, float* out, int64_t rows, int64_t n, const float* weight, double eps,
                   float* column_absmax) {
  normalize_rows(in, out, rows, n, weight, nullptr, column_absmax,
                 [n, eps](const float* row, float& shift, float& scale) {
                   const double squares = sum_in_double(row, n, [](double v) { return v * v; });
                   scale = static_cast<float>(1.0 / std::sqrt(squares / static_cast<double>(n) + eps));
                   shift = 0.f;
                 });
}

}  // namespace cq::kernels
