// Per-token quantization (eq. 1): Δ_i = t_i / qmax with t_i = max_j |X_ij|, Q = round(X / Δ).
// Applied to a weight W (O x I, rows = output channels) this is per-channel (eq. 2).
#include "quant/methods.h"
#include "quant/quant_common.h"

namespace cq::quant_detail {

namespace {

class PerTokenQuantizer final : public Quantizer {
 public:
  explicit PerTokenQuantizer(const QuantizerSpec& spec)
      : spec_(spec), qmax_(symmetric_qmax(spec.bits, spec.method)) {}

  const QuantizerSpec& spec() const override { return spec_; }

  // Scan and quantize each row while it is in cache: one pass over memory. The column maxima
  // are gathered only for the statistics (Table 1 reports c_j >= t_i at α = 1 too).
  void fake_quantize(MatrixView x, KernelStats* stats) const override {
    check_view(x, spec_.method);
    const RowPass pass = scan_rows(x, stats != nullptr, spec_.method, [&](int64_t i, float row_absmax) {
      return quant_kernels::fake_quantize_row(x.row(i), x.cols, nonzero_divisor(row_absmax / qmax_), qmax_);
    });
    report(x, pass, stats);
  }

  QuantizedMatrix quantize(MatrixView x, KernelStats* stats) const override {
    check_view(x, spec_.method);
    QuantizedMatrix quantized;
    quantized.rows = x.rows;
    quantized.cols = x.cols;
    quantized.bits = spec_.bits;
    quantized.codes.resize(static_cast<size_t>(x.rows * x.cols));
    quantized.row_scales.resize(static_cast<size_t>(x.rows));
    const RowPass pass = scan_rows(x, stats != nullptr, spec_.method, [&](int64_t i, float row_absmax) {
      const float per_token_scale = nonzero_divisor(row_absmax / qmax_);
      quantized.row_scales[static_cast<size_t>(i)] = per_token_scale;
      return quant_kernels::quantize_row_codes(x.row(i), x.cols, per_token_scale, qmax_,
                                               quantized.codes.data() + i * x.cols);
    });
    report(x, pass, stats);
    return quantized;
  }

 private:
  static void report(const MatrixView& x, const RowPass& pass, KernelStats* stats) {
    if (stats == nullptr) return;
    add_stats(stats, x, pass.counts, pass.exact_zeros,
              count_column_row_relation(pass.row_absmax, pass.column_absmax, /*alpha=*/1.0));
  }

  QuantizerSpec spec_;
  float qmax_;
};

}  // namespace

std::unique_ptr<Quantizer> make_per_token_quantizer(const QuantizerSpec& spec) {
  return std::make_unique<PerTokenQuantizer>(spec);
}

}  // namespace cq::quant_detail
