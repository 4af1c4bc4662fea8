// "Remove kernel" (Figures 1, 6, 7; SPEC.md): the elements of the per-token quantization
// kernel (round(x / Δ_i) == 0 with Δ_i = t_i / qmax, eq. 1) are set to zero and every other
// element is left unquantized. With kernel_target p >= 0 the floor(p · elements) elements
// with the smallest |x_ij| / t_i (the per-token zero-bound order) are zeroed instead; ties
// are broken by row-major position, i.e. a stable sort. The kernel reported is every output
// equal to zero (the zeroed elements plus exact zeros outside them).
#include <algorithm>
#include <cmath>

#include "quant/methods.h"
#include "quant/quant_common.h"
#include "util/error.h"

namespace cq::quant_detail {

namespace {

class RemoveKernelQuantizer final : public Quantizer {
 public:
  explicit RemoveKernelQuantizer(const QuantizerSpec& spec)
      : spec_(spec), qmax_(symmetric_qmax(spec.bits, spec.method)) {
    if (std::isnan(spec.kernel_target) || spec.kernel_target > 1.0)
      fail("quantizer remove-kernel: kernel target {} must be at most 1 (< 0: the per-token kernel)",
           spec.kernel_target);
  }

  const QuantizerSpec& spec() const override { return spec_; }

  void fake_quantize(MatrixView x, KernelStats* stats) const override {
    check_view(x, spec_.method);
    const RowPass pass = scan_rows(x, false, spec_.method, [](int64_t, float) { return quant_kernels::RowCounts{}; });
    if (spec_.kernel_target < 0.0)
      zero_per_token_kernel(x, pass.row_absmax);
    else
      zero_smallest_share(x, pass.row_absmax);
    if (stats == nullptr) return;
    const quant_kernels::RowCounts counts = for_each_row(x, [&](int64_t i) {
      quant_kernels::RowCounts row_counts;
      const float* row = x.row(i);
      for (int64_t j = 0; j < x.cols; ++j) row_counts.kernel += row[j] == 0.f ? 1 : 0;
      return row_counts;
    });
    add_stats(stats, x, counts, pass.exact_zeros, {});
  }

  QuantizedMatrix quantize(MatrixView, KernelStats*) const override {
    fail("quantizer remove-kernel leaves the non-kernel values unquantized: it has no integer codes");
  }

 private:
  void zero_per_token_kernel(const MatrixView& x, const std::vector<float>& row_absmax) const {
    for_each_row(x, [&](int64_t i) {
      const float per_token_scale = nonzero_divisor(row_absmax[static_cast<size_t>(i)] / qmax_);
      float* row = x.row(i);
      for (int64_t j = 0; j < x.cols; ++j)
        if (std::nearbyint(row[j] / per_token_scale) == 0.f) row[j] = 0.f;
      return quant_kernels::RowCounts{};
    });
  }

  // |x_ij| / t_i, the order in which per-token quantization sends elements to zero.
  static float zero_bound_key(float value, float row_absmax) {
    return std::fabs(value) / nonzero_divisor(row_absmax);
  }

  void zero_smallest_share(const MatrixView& x, const std::vector<float>& row_absmax) const {
    const int64_t elements = x.rows * x.cols;
    const auto to_zero = static_cast<int64_t>(std::floor(spec_.kernel_target * static_cast<double>(elements)));
    if (to_zero <= 0) return;
    std::vector<float> keys(static_cast<size_t>(elements));
    for (int64_t i = 0; i < x.rows; ++i)
      for (int64_t j = 0; j < x.cols; ++j)
        keys[static_cast<size_t>(i * x.cols + j)] = zero_bound_key(x.row(i)[j], row_absmax[static_cast<size_t>(i)]);
    // The to_zero-th smallest key; everything below it goes, and of the keys equal to it the
    // first ones in row-major order until to_zero elements are zeroed.
    std::vector<float> order = keys;
    std::nth_element(order.begin(), order.begin() + (to_zero - 1), order.end());
    const float threshold = order[static_cast<size_t>(to_zero - 1)];
    int64_t below = 0;
    for (const float key : keys) below += key < threshold ? 1 : 0;
    int64_t ties_to_zero = to_zero - below;
    for (int64_t i = 0; i < x.rows; ++i) {
      float* row = x.row(i);
      for (int64_t j = 0; j < x.cols; ++j) {
        const float key = keys[static_cast<size_t>(i * x.cols + j)];
        if (key < threshold || (key == threshold && ties_to_zero-- > 0)) row[j] = 0.f;
      }
    }
  }

  QuantizerSpec spec_;
  float qmax_;
};

}  // namespace

std::unique_ptr<Quantizer> make_remove_kernel_quantizer(const QuantizerSpec& spec) {
  return std::make_unique<RemoveKernelQuantizer>(spec);
}

}  // namespace cq::quant_detail
