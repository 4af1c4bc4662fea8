#include "quant/crossquant.h"

#include <cmath>

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

std::vector<float> CrossQuantQuantizer::column_divisors(const std::vector<float>& column_absmax) const {
  std::vector<float> divisors(column_absmax.size());
  for (size_t j = 0; j < column_absmax.size(); ++j)
    divisors[j] = quant_detail::nonzero_divisor(float_power(column_absmax[j], one_minus_alpha_));
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

void CrossQuantQuantizer::fake_quantize(MatrixView x, KernelStats* stats) const {
  quant_detail::check_view(x, spec_.method);
  quant_detail::RowPass pass;
  quant_kernels::RowCounts counts;
  if (is_static()) {
    if (static_cast<int64_t>(static_column_divisors_.size()) != x.cols)
      fail("crossquant: {} static column maxima for a matrix with {} columns", static_column_divisors_.size(), x.cols);
    // c is known: quantize each row right after its scan, in one pass like per-token.
    pass = quant_detail::scan_rows(x, false, spec_.method, [&](int64_t i, float row_absmax) {
      return quant_kernels::fake_quantize_row_cross(x.row(i), x.cols, row_divisor(row_absmax),
                                                    static_column_divisors_.data(),
                                                    static_column_reciprocals_.data(), qmax_);
    });
    counts = pass.counts;
    pass.column_absmax = spec_.static_column_absmax;
  } else {
    // c_j needs every row first: one pass for t and c, one to quantize.
    pass = quant_detail::scan_rows(x, true, spec_.method,
                                   [](int64_t, float) { return quant_kernels::RowCounts{}; });
    const std::vector<float> divisors = column_divisors(pass.column_absmax);
    const std::vector<float> reciprocals = quant_kernels::reciprocals_for(divisors);
    counts = quant_detail::for_each_row_after_scan(x, [&](int64_t i) {
      return quant_kernels::fake_quantize_row_cross(x.row(i), x.cols,
                                                    row_divisor(pass.row_absmax[static_cast<size_t>(i)]),
                                                    divisors.data(), reciprocals.data(), qmax_);
    });
  }
  if (stats != nullptr)
    quant_detail::add_stats(stats, x, counts, pass.exact_zeros,
                            quant_detail::count_column_row_relation(pass.row_absmax, pass.column_absmax, spec_.alpha));
}

QuantizedMatrix CrossQuantQuantizer::quantize(MatrixView x, KernelStats* stats) const {
  quant_detail::check_view(x, spec_.method);
  QuantizedMatrix quantized;
  quantized.rows = x.rows;
  quantized.cols = x.cols;
  quantized.bits = spec_.bits;
  quantized.codes.resize(static_cast<size_t>(x.rows * x.cols));
  quantized.row_scales.resize(static_cast<size_t>(x.rows));
  quant_detail::RowPass pass;
  quant_kernels::RowCounts counts;
  if (is_static()) {
    if (static_cast<int64_t>(static_column_divisors_.size()) != x.cols)
      fail("crossquant: {} static column maxima for a matrix with {} columns", static_column_divisors_.size(), x.cols);
    quantized.column_factors = static_column_divisors_;
    pass = quant_detail::scan_rows(x, false, spec_.method, [&](int64_t i, float row_absmax) {
      const float divisor = row_divisor(row_absmax);
      quantized.row_scales[static_cast<size_t>(i)] = divisor;
      return quant_kernels::quantize_row_cross_codes(x.row(i), x.cols, divisor, static_column_divisors_.data(),
                                                     static_column_reciprocals_.data(), qmax_,
                                                     quantized.codes.data() + i * x.cols);
    });
    counts = pass.counts;
    pass.column_absmax = spec_.static_column_absmax;
  } else {
    pass = quant_detail::scan_rows(x, true, spec_.method,
                                   [](int64_t, float) { return quant_kernels::RowCounts{}; });
    quantized.column_factors = column_divisors(pass.column_absmax);
    const std::vector<float> reciprocals = quant_kernels::reciprocals_for(quantized.column_factors);
    counts = quant_detail::for_each_row_after_scan(x, [&](int64_t i) {
      const float divisor = row_divisor(pass.row_absmax[static_cast<size_t>(i)]);
      quantized.row_scales[static_cast<size_t>(i)] = divisor;
      return quant_kernels::quantize_row_cross_codes(x.row(i), x.cols, divisor, quantized.column_factors.data(),
                                                     reciprocals.data(), qmax_, quantized.codes.data() + i * x.cols);
    });
  }
  if (stats != nullptr)
    quant_detail::add_stats(stats, x, counts, pass.exact_zeros,
                            quant_detail::count_column_row_relation(pass.row_absmax, pass.column_absmax, spec_.alpha));
  return quantized;
}

namespace quant_detail {
std::unique_ptr<Quantizer> make_crossquant_quantizer(const QuantizerSpec& spec) {
  return std::make_unique<CrossQuantQuantizer>(spec);
}
}  // namespace quant_detail

}  // namespace cq
