// Per-tensor quantization (SmoothQuant's option): one Δ = max|X| / qmax for the matrix given.
#include <algorithm>

#include "quant/methods.h"
#include "quant/quant_common.h"

namespace cq::quant_detail {

namespace {

class PerTensorQuantizer final : public Quantizer {
 public:
  explicit PerTensorQuantizer(const QuantizerSpec& spec)
      : spec_(spec), qmax_(symmetric_qmax(spec.bits, spec.method)) {}

  const QuantizerSpec& spec() const override { return spec_; }

  void fake_quantize(MatrixView x, KernelStats* stats) const override {
    check_view(x, spec_.method);
    const RowPass pass = scan(x);
    const float tensor_scale = scale_of(pass);
    const quant_kernels::RowCounts counts = for_each_row(x, [&](int64_t i) {
      return quant_kernels::fake_quantize_row(x.row(i), x.cols, tensor_scale, qmax_);
    });
    if (stats != nullptr) add_stats(stats, x, counts, pass.exact_zeros, {});
  }

  QuantizedMatrix quantize(MatrixView x, KernelStats* stats) const override {
    check_view(x, spec_.method);
    const RowPass pass = scan(x);
    QuantizedMatrix quantized;
    quantized.rows = x.rows;
    quantized.cols = x.cols;
    quantized.bits = spec_.bits;
    quantized.tensor_scale = scale_of(pass);
    quantized.codes.resize(static_cast<size_t>(x.rows * x.cols));
    const quant_kernels::RowCounts counts = for_each_row(x, [&](int64_t i) {
      return quant_kernels::quantize_row_codes(x.row(i), x.cols, quantized.tensor_scale, qmax_,
                                               quantized.codes.data() + i * x.cols);
    });
    if (stats != nullptr) add_stats(stats, x, counts, pass.exact_zeros, {});
    return quantized;
  }

 private:
  RowPass scan(const MatrixView& x) const {
    return scan_rows(x, false, spec_.method, [](int64_t, float) { return quant_kernels::RowCounts{}; });
  }
  float scale_of(const RowPass& pass) const {
    float tensor_absmax = 0.f;
    for (const float row_max : pass.row_absmax) tensor_absmax = std::max(tensor_absmax, row_max);
    return nonzero_divisor(tensor_absmax / qmax_);
  }

  QuantizerSpec spec_;
  float qmax_;
};

}  // namespace

std::unique_ptr<Quantizer> make_per_tensor_quantizer(const QuantizerSpec& spec) {
  return std::make_unique<PerTensorQuantizer>(spec);
}

}  // namespace cq::quant_detail
