// Dynamic per-token asymmetric quantization, OmniQuant's activation quantizer
// (quant/omniquant_grid.h): each row (token) on the grid of its own [min, max].
#include <algorithm>

#include "quant/methods.h"
#include "quant/omniquant_grid.h"
#include "quant/quant_common.h"

namespace cq::quant_detail {

namespace {

struct RowRange {
  float low, high;
};

RowRange row_range(const float* x, int64_t n) {
  RowRange range{x[0], x[0]};
  for (int64_t j = 1; j < n; ++j) {
    range.low = std::min(range.low, x[j]);
    range.high = std::max(range.high, x[j]);
  }
  return range;
}

class PerTokenAsymmetricQuantizer final : public Quantizer {
 public:
  explicit PerTokenAsymmetricQuantizer(const QuantizerSpec& spec) : spec_(spec) {
    symmetric_qmax(spec.bits, spec.method);  // the bit-width check every quantizer makes
  }

  const QuantizerSpec& spec() const override { return spec_; }

  void fake_quantize(MatrixView x, KernelStats* stats) const override {
    check_view(x, spec_.method);
    const RowPass pass = validate(x);
    if (x.cols == 0) return;
    const quant_kernels::RowCounts counts = for_each_row(x, [&](int64_t i) {
      OmniQuantRunCounts row_counts;
      const RowRange range = row_range(x.row(i), x.cols);
      omniquant_fake_quantize_run(x.row(i), x.cols, range.low, range.high, spec_.bits, row_counts);
      return quant_kernels::RowCounts{row_counts.kernel, row_counts.clipped};
    });
    if (stats != nullptr) add_stats(stats, x, counts, pass.exact_zeros, {});
  }

  // Codes with one scale and zero point per row (stored as groups as wide as the row).
  QuantizedMatrix quantize(MatrixView x, KernelStats* stats) const override {
    check_view(x, spec_.method);
    const RowPass pass = validate(x);
    QuantizedMatrix quantized;
    quantized.rows = x.rows;
    quantized.cols = x.cols;
    quantized.bits = spec_.bits;
    quantized.group_size = std::max<int64_t>(x.cols, 1);
    quantized.codes.resize(static_cast<size_t>(x.rows * x.cols));
    quantized.group_scales.resize(static_cast<size_t>(x.rows));
    quantized.group_zeros.resize(static_cast<size_t>(x.rows));
    if (x.cols == 0) return quantized;
    const quant_kernels::RowCounts counts = for_each_row(x, [&](int64_t i) {
      OmniQuantRunCounts row_counts;
      const float* row = x.row(i);
      const RowRange range = row_range(row, x.cols);
      const OmniQuantGrid grid = omniquant_grid(range.low, range.high, spec_.bits);
      quantized.group_scales[static_cast<size_t>(i)] = grid.scale;
      quantized.group_zeros[static_cast<size_t>(i)] = static_cast<int16_t>(grid.zero_point);
      int16_t* codes = quantized.codes.data() + i * x.cols;
      for (int64_t j = 0; j < x.cols; ++j) codes[j] = static_cast<int16_t>(omniquant_code(row[j], grid, row_counts));
      return quant_kernels::RowCounts{row_counts.kernel, row_counts.clipped};
    });
    if (stats != nullptr) add_stats(stats, x, counts, pass.exact_zeros, {});
    return quantized;
  }

 private:
  // Finiteness (cq::Error naming the row) and the zero count, before anything is modified.
  RowPass validate(const MatrixView& x) const {
    return scan_rows(x, false, spec_.method, [](int64_t, float) { return quant_kernels::RowCounts{}; });
  }

  QuantizerSpec spec_;
};

}  // namespace

std::unique_ptr<Quantizer> make_per_token_asymmetric_quantizer(const QuantizerSpec& spec) {
  return std::make_unique<PerTokenAsymmetricQuantizer>(spec);
}

}  // namespace cq::quant_detail
