#include "quant/crossquant.h"

#include <algorithm>
#include <bit>
#include <cmath>

#ifdef CQ_HAVE_LIBMVEC
#include "kernels/avx512.h"
#include "kernels/kernel_dispatch.h"
#endif

#include "quant/methods.h"
#include "quant/quant_common.h"
#include "quant/row_kernels.h"
#include "util/error.h"

namespace cq {

namespace {

// base^exponent in float, correctly rounded except for vanishingly rare double-rounding cases.
// torch's float pow takes the exponent as float and special-cases 0.5 as sqrt.
float float_power(float base, float exponent) {
  if (exponent == 0.5f) return std::sqrt(base);
  return static_cast<float>(std::pow(static_cast<double>(base), static_cast<double>(exponent)));
}

}  // namespace

#ifdef CQ_HAVE_LIBMVEC
CQ_AVX512_BEGIN
// glibc's libmvec: pow of 8 doubles (the x86-64 vector function ABI's AVX-512 variant, the
// one GCC calls for a vectorized pow), within 4 ulp of the true power.
extern "C" __m512d _ZGVeN8vv_pow(__m512d base, __m512d exponent);
namespace {
// float_powers' whole groups of 8 on AVX-512 CPUs; returns the first index left undone.
size_t float_power_vectors_avx512(std::span<const float> bases, float exponent, float* out) {
  size_t j = 0;
  const __m512d exponent_v = _mm512_set1_pd(static_cast<double>(exponent));
  for (; j + 8 <= bases.size(); j += 8) {
    const __m512d power = _ZGVeN8vv_pow(_mm512_cvtps_pd(_mm256_loadu_ps(bases.data() + j)), exponent_v);
    const __m256 low = _mm512_cvtpd_ps(_mm512_mul_pd(power, _mm512_set1_pd(1.0 - 0x1p-44)));
    const __m256 high = _mm512_cvtpd_ps(_mm512_mul_pd(power, _mm512_set1_pd(1.0 + 0x1p-44)));
    _mm256_storeu_ps(out + j, high);
    for (unsigned lanes = ~static_cast<unsigned>(_mm256_cmp_ps_mask(low, high, _CMP_EQ_OQ)) & 0xFFu; lanes != 0;
         lanes &= lanes - 1) {
      const size_t lane = j + static_cast<size_t>(std::countr_zero(lanes));
      out[lane] = float_power(bases[lane], exponent);
    }
  }
  return j;
}
}  // namespace
CQ_AVX512_END
#endif

namespace {

// out[j] = float_power(bases[j], exponent). With libmvec on AVX-512 CPUs, 8 powers at a time:
// its double result is within 4 ulp of the true power and std::pow's within 1, so where
// power·(1 − 2^-44) and power·(1 + 2^-44) round to the same float no float midpoint lies
// between them, and std::pow's result rounds to that float too. The few lanes where they
// differ (measured: a few in 10^6) take std::pow. 4096 columns: ~15 µs instead of ~45 µs.
void float_powers(std::span<const float> bases, float exponent, float* out) {
  size_t j = 0;
#ifdef CQ_HAVE_LIBMVEC
  if (exponent != 0.5f && kernels::avx512_kernels()) j = float_power_vectors_avx512(bases, exponent, out);
#endif
  for (; j < bases.size(); ++j) out[j] = float_power(bases[j], exponent);
}

void check_column_absmax(const std::vector<float>& column_absmax) {
  for (size_t j = 0; j < column_absmax.size(); ++j)
    if (!(column_absmax[j] >= 0.f && std::isfinite(column_absmax[j])))
      fail("crossquant: static column maximum c_{} = {} must be finite and >= 0", j, column_absmax[j]);
}

}  // namespace

CrossQuantQuantizer::CrossQuantQuantizer(const QuantizerSpec& spec)
    : spec_(spec), qmax_(quant_detail::symmetric_qmax(spec.bits, "crossquant")) {
  spec_.method = "crossquant";
  if (!(spec.alpha >= 0.0 && spec.alpha <= 1.0))
    fail("quantizer crossquant: alpha {} must lie in [0, 1]", spec.alpha);
  alpha_ = static_cast<float>(spec.alpha);
  one_minus_alpha_ = static_cast<float>(1.0 - spec.alpha);
  set_static_column_absmax(spec.static_column_absmax);
}

void CrossQuantQuantizer::set_static_column_absmax(std::vector<float> column_absmax) {
  check_column_absmax(column_absmax);
  static_column_divisors_ = column_divisors(column_absmax);
  static_column_reciprocals_ = quant_kernels::reciprocals_for(static_column_divisors_);
  spec_.static_column_absmax = std::move(column_absmax);
}

float CrossQuantQuantizer::row_divisor(float row_absmax) const {
  return quant_detail::nonzero_divisor(float_power(row_absmax, alpha_) / qmax_);
}

std::vector<float> CrossQuantQuantizer::column_divisors(std::span<const float> column_absmax) const {
  // One thread: waking the second costs more than the powers of a few thousand columns.
  std::vector<float> divisors(column_absmax.size());
  float_powers(column_absmax, one_minus_alpha_, divisors.data());
  for (float& divisor : divisors) divisor = quant_detail::nonzero_divisor(divisor);
  return divisors;
}

void CrossQuantQuantizer::accumulate_column_absmax(MatrixView x, std::vector<float>& column_absmax) {
  quant_detail::check_view(x, "crossquant");
  if (column_absmax.empty()) column_absmax.assign(static_cast<size_t>(x.cols), 0.f);
  if (static_cast<int64_t>(column_absmax.size()) != x.cols)
    fail("crossquant calibration: {} column maxima for a matrix with {} columns", column_absmax.size(), x.cols);
  const quant_detail::RowPass pass = quant_detail::scan_rows(
      x, true, "crossquant", [](int64_t, float) { return quant_kernels::RowCounts{}; });
  for (size_t j = 0; j < column_absmax.size(); ++j)
    column_absmax[j] = std::max(column_absmax[j], pass.column_absmax[j]);
}

quant_kernels::RowCounts CrossQuantQuantizer::fake_quantize_row_group(MatrixView x, int64_t i, int64_t count,
                                                                     const float* row_absmax,
                                                                     const std::vector<float>& divisors,
                                                                     const std::vector<float>& reciprocals) const {
  if (count == 2)
    return quant_kernels::fake_quantize_row_pair_cross(x.row(i), x.row(i + 1), x.cols, row_divisor(row_absmax[0]),
                                                       row_divisor(row_absmax[1]), divisors.data(), reciprocals.data(),
                                                       qmax_);
  return quant_kernels::fake_quantize_row_cross(x.row(i), x.cols, row_divisor(row_absmax[0]), divisors.data(),
                                                reciprocals.data(), qmax_);
}

quant_kernels::RowCounts CrossQuantQuantizer::quantize_row_group(MatrixView x, int64_t i, int64_t count,
                                                                const float* row_absmax,
                                                                const std::vector<float>& divisors,
                                                                const std::vector<float>& reciprocals,
                                                                QuantizedMatrix& quantized) const {
  const float divisor0 = row_divisor(row_absmax[0]);
  quantized.row_scales[static_cast<size_t>(i)] = divisor0;
  int16_t* codes = quantized.codes.data() + i * x.cols;
  if (count == 1)
    return quant_kernels::quantize_row_cross_codes(x.row(i), x.cols, divisor0, divisors.data(), reciprocals.data(),
                                                   qmax_, codes);
  const float divisor1 = row_divisor(row_absmax[1]);
  quantized.row_scales[static_cast<size_t>(i + 1)] = divisor1;
  return quant_kernels::quantize_row_pair_cross_codes(x.row(i), x.row(i + 1), x.cols, divisor0, divisor1,
                                                      divisors.data(), reciprocals.data(), qmax_, codes,
                                                      codes + x.cols);
}

quant_kernels::RowCounts CrossQuantQuantizer::fake_quantize_known_columns(MatrixView x,
                                                                         std::span<const float> column_absmax,
                                                                         const std::vector<float>& divisors,
                                                                         const std::vector<float>& reciprocals,
                                                                         KernelStats* stats) const {
  const quant_detail::RowPass pass = quant_detail::scan_row_groups<kRowGroup>(
      x, false, spec_.method, [&](int64_t i, int64_t count, const float* row_absmax) {
        return fake_quantize_row_group(x, i, count, row_absmax, divisors, reciprocals);
      });
  if (stats != nullptr)
    quant_detail::add_stats(stats, x, pass.counts, pass.exact_zeros,
                            quant_detail::count_column_row_relation(pass.row_absmax, column_absmax, spec_.alpha));
  return pass.counts;
}

quant_kernels::RowCounts CrossQuantQuantizer::quantize_known_columns(MatrixView x, std::span<const float> column_absmax,
                                                                    const std::vector<float>& divisors,
                                                                    const std::vector<float>& reciprocals,
                                                                    QuantizedMatrix& quantized,
                                                                    KernelStats* stats) const {
  quantized.column_factors = divisors;
  const quant_detail::RowPass pass = quant_detail::scan_row_groups<kRowGroup>(
      x, false, spec_.method, [&](int64_t i, int64_t count, const float* row_absmax) {
        return quantize_row_group(x, i, count, row_absmax, divisors, reciprocals, quantized);
      });
  if (stats != nullptr)
    quant_detail::add_stats(stats, x, pass.counts, pass.exact_zeros,
                            quant_detail::count_column_row_relation(pass.row_absmax, column_absmax, spec_.alpha));
  return pass.counts;
}

namespace {
void check_static_column_count(size_t static_columns, int64_t cols) {
  if (static_cast<int64_t>(static_columns) != cols)
    fail("crossquant: {} static column maxima for a matrix with {} columns", static_columns, cols);
}

QuantizedMatrix empty_codes(const MatrixView& x, int bits) {
  QuantizedMatrix quantized;
  quantized.rows = x.rows;
  quantized.cols = x.cols;
  quantized.bits = bits;
  quantized.codes.resize(static_cast<size_t>(x.rows * x.cols));
  quantized.row_scales.resize(static_cast<size_t>(x.rows));
  return quantized;
}

bool all_finite(std::span<const float> values) {
  return std::all_of(values.begin(), values.end(), [](float v) { return std::isfinite(v); });
}

// Dynamic c never clips (|x_ij| <= c_j); a clipped code means the maxima given were wrong.
void check_not_clipped(const quant_kernels::RowCounts& counts) {
  if (counts.clipped > 0)
    fail("crossquant: the column maxima given are below the matrix's own ({} codes clipped); they must be "
         "max_i |x_ij| of the matrix quantized",
         counts.clipped);
}
}  // namespace

void CrossQuantQuantizer::check_given_column_absmax(const MatrixView& x, std::span<const float> column_absmax) const {
  quant_detail::check_view(x, spec_.method);
  if (is_static()) fail("crossquant: column maxima given to a static CrossQuant quantizer (it has its own)");
  if (static_cast<int64_t>(column_absmax.size()) != x.cols)
    fail("crossquant: {} column maxima given for a matrix with {} columns", column_absmax.size(), x.cols);
}

void CrossQuantQuantizer::fake_quantize(MatrixView x, KernelStats* stats) const {
  quant_detail::check_view(x, spec_.method);
  if (is_static()) {
    check_static_column_count(static_column_divisors_.size(), x.cols);
    fake_quantize_known_columns(x, spec_.static_column_absmax, static_column_divisors_, static_column_reciprocals_,
                                stats);
    return;
  }
  // c_j needs every row first: one pass for t and c, one to quantize.
  const quant_detail::RowPass pass = quant_detail::scan_rows(
      x, true, spec_.method, [](int64_t, float) { return quant_kernels::RowCounts{}; });
  const std::vector<float> divisors = column_divisors(pass.column_absmax);
  const std::vector<float> reciprocals = quant_kernels::reciprocals_for(divisors);
  const quant_kernels::RowCounts counts =
      quant_detail::for_each_row_group_after_scan<kRowGroup>(x, [&](int64_t i, int64_t count) {
        return fake_quantize_row_group(x, i, count, pass.row_absmax.data() + i, divisors, reciprocals);
      });
  if (stats != nullptr)
    quant_detail::add_stats(stats, x, counts, pass.exact_zeros,
                            quant_detail::count_column_row_relation(pass.row_absmax, pass.column_absmax, spec_.alpha));
}

void CrossQuantQuantizer::fake_quantize_with_column_absmax(MatrixView x, std::span<const float> column_absmax,
                                                           KernelStats* stats) const {
  check_given_column_absmax(x, column_absmax);
  // NaN/Inf in X reaches c too: the two-pass path names the offending row.
  if (!all_finite(column_absmax)) return fake_quantize(x, stats);
  const std::vector<float> divisors = column_divisors(column_absmax);
  check_not_clipped(fake_quantize_known_columns(x, column_absmax, divisors, quant_kernels::reciprocals_for(divisors),
                                                stats));
}

QuantizedMatrix CrossQuantQuantizer::quantize(MatrixView x, KernelStats* stats) const {
  quant_detail::check_view(x, spec_.method);
  QuantizedMatrix quantized = empty_codes(x, spec_.bits);
  if (is_static()) {
    check_static_column_count(static_column_divisors_.size(), x.cols);
    quantize_known_columns(x, spec_.static_column_absmax, static_column_divisors_, static_column_reciprocals_,
                           quantized, stats);
    return quantized;
  }
  const quant_detail::RowPass pass = quant_detail::scan_rows(
      x, true, spec_.method, [](int64_t, float) { return quant_kernels::RowCounts{}; });
  quantized.column_factors = column_divisors(pass.column_absmax);
  const std::vector<float> reciprocals = quant_kernels::reciprocals_for(quantized.column_factors);
  const quant_kernels::RowCounts counts =
      quant_detail::for_each_row_group_after_scan<kRowGroup>(x, [&](int64_t i, int64_t count) {
        return quantize_row_group(x, i, count, pass.row_absmax.data() + i, quantized.column_factors, reciprocals,
                                  quantized);
      });
  if (stats != nullptr)
    quant_detail::add_stats(stats, x, counts, pass.exact_zeros,
                            quant_detail::count_column_row_relation(pass.row_absmax, pass.column_absmax, spec_.alpha));
  return quantized;
}

QuantizedMatrix CrossQuantQuantizer::quantize_with_column_absmax(MatrixView x, std::span<const float> column_absmax,
                                                                 KernelStats* stats) const {
  check_given_column_absmax(x, column_absmax);
  if (!all_finite(column_absmax)) return quantize(x, stats);
  QuantizedMatrix quantized = empty_codes(x, spec_.bits);
  const std::vector<float> divisors = column_divisors(column_absmax);
  check_not_clipped(
      quantize_known_columns(x, column_absmax, divisors, quant_kernels::reciprocals_for(divisors), quantized, stats));
  return quantized;
}

namespace quant_detail {
std::unique_ptr<Quantizer> make_crossquant_quantizer(const QuantizerSpec& spec) {
  return std::make_unique<CrossQuantQuantizer>(spec);
}
}  // namespace quant_detail

}  // namespace cq
