// Group-wise quantization (W4A8-g128): each row is cut into groups of g consecutive columns,
// the last group the shorter remainder when g does not divide the column count; one scale
// per group.
//   symmetric:  Δ = max|x| / qmax, q = round(x / Δ) in [−qmax, qmax]            (like eq. 1)
//   asymmetric (AWQ's pseudo-quantizer): scale = max(max − min, 1e-5) / (2^N − 1),
//               zero = clamp(round(−min / scale), 0, 2^N − 1),
//               q = clamp(round(x / scale) + zero, 0, 2^N − 1), x̂ = (q − zero) · scale.
// The asymmetric kernel is q == zero (the code that dequantizes to 0).
#include <algorithm>
#include <cmath>

#include "quant/methods.h"
#include "quant/quant_common.h"
#include "util/error.h"

namespace cq::quant_detail {

namespace {

// AWQ clamps the range so that a constant group does not divide by zero.
constexpr float kAwqMinimumRange = 1e-5f;

struct AsymmetricGroup {
  float scale;
  float zero_point;
};

AsymmetricGroup asymmetric_group_parameters(const float* x, int64_t n, float max_code) {
  float group_min = x[0];
  float group_max = x[0];
  for (int64_t j = 1; j < n; ++j) {
    group_min = std::min(group_min, x[j]);
    group_max = std::max(group_max, x[j]);
  }
  const float scale = std::max(group_max - group_min, kAwqMinimumRange) / max_code;
  const float zero_point = std::clamp(std::nearbyint(-group_min / scale), 0.f, max_code);
  return {scale, zero_point};
}

// q = clamp(round(x / scale) + zero, 0, max_code); clipped when the clamp changed it.
float asymmetric_code(float x, const AsymmetricGroup& group, float max_code,
                      quant_kernels::RowCounts& counts) {
  const float shifted = std::nearbyint(x / group.scale) + group.zero_point;
  const float code = std::clamp(shifted, 0.f, max_code);
  if (code != shifted) ++counts.clipped;
  if (code == group.zero_point) ++counts.kernel;
  return code;
}

class GroupQuantizer final : public Quantizer {
 public:
  explicit GroupQuantizer(const QuantizerSpec& spec)
      : spec_(spec),
        qmax_(symmetric_qmax(spec.bits, spec.method)),
        max_code_(static_cast<float>((1 << spec.bits) - 1)) {
    if (spec.group_size < 1) fail("quantizer group: group size {} must be at least 1", spec.group_size);
  }

  const QuantizerSpec& spec() const override { return spec_; }

  void fake_quantize(MatrixView x, KernelStats* stats) const override {
    check_view(x, spec_.method);
    const RowPass pass = validate(x);
    const quant_kernels::RowCounts counts = for_each_row(x, [&](int64_t i) {
      quant_kernels::RowCounts row_counts;
      float* row = x.row(i);
      for (int64_t start = 0; start < x.cols; start += spec_.group_size) {
        const int64_t length = std::min(spec_.group_size, x.cols - start);
        float* group = row + start;
        if (spec_.asymmetric) {
          const AsymmetricGroup parameters = asymmetric_group_parameters(group, length, max_code_);
          for (int64_t j = 0; j < length; ++j)
            group[j] = (asymmetric_code(group[j], parameters, max_code_, row_counts) - parameters.zero_point) *
                       parameters.scale;
        } else {
          row_counts += quant_kernels::fake_quantize_row(group, length, symmetric_scale(group, length), qmax_);
        }
      }
      return row_counts;
    });
    if (stats != nullptr) add_stats(stats, x, counts, pass.exact_zeros, {});
  }

  QuantizedMatrix quantize(MatrixView x, KernelStats* stats) const override {
    check_view(x, spec_.method);
    const RowPass pass = validate(x);
    const int64_t groups_per_row = (x.cols + spec_.group_size - 1) / spec_.group_size;
    QuantizedMatrix quantized;
    quantized.rows = x.rows;
    quantized.cols = x.cols;
    quantized.bits = spec_.bits;
    quantized.group_size = spec_.group_size;
    quantized.codes.resize(static_cast<size_t>(x.rows * x.cols));
    quantized.group_scales.resize(static_cast<size_t>(x.rows * groups_per_row));
    if (spec_.asymmetric) quantized.group_zeros.resize(quantized.group_scales.size());
    const quant_kernels::RowCounts counts = for_each_row(x, [&](int64_t i) {
      quant_kernels::RowCounts row_counts;
      const float* row = x.row(i);
      for (int64_t group_index = 0; group_index < groups_per_row; ++group_index) {
        const int64_t start = group_index * spec_.group_size;
        const int64_t length = std::min(spec_.group_size, x.cols - start);
        const float* group = row + start;
        int16_t* codes = quantized.codes.data() + i * x.cols + start;
        const auto slot = static_cast<size_t>(i * groups_per_row + group_index);
        if (spec_.asymmetric) {
          const AsymmetricGroup parameters = asymmetric_group_parameters(group, length, max_code_);
          quantized.group_scales[slot] = parameters.scale;
          quantized.group_zeros[slot] = static_cast<int16_t>(parameters.zero_point);
          for (int64_t j = 0; j < length; ++j)
            codes[j] = static_cast<int16_t>(asymmetric_code(group[j], parameters, max_code_, row_counts));
        } else {
          const float scale = symmetric_scale(group, length);
          quantized.group_scales[slot] = scale;
          row_counts += quant_kernels::quantize_row_codes(group, length, scale, qmax_, codes);
        }
      }
      return row_counts;
    });
    if (stats != nullptr) add_stats(stats, x, counts, pass.exact_zeros, {});
    return quantized;
  }

 private:
  // Finiteness check and zero count before anything is modified.
  RowPass validate(const MatrixView& x) const {
    return scan_rows(x, false, spec_.method, [](int64_t, float) { return quant_kernels::RowCounts{}; });
  }
  float symmetric_scale(const float* group, int64_t length) const {
    return nonzero_divisor(quant_kernels::scan_row(group, length, nullptr).absmax / qmax_);
  }

  QuantizerSpec spec_;
  float qmax_;      // symmetric: 2^(N−1) − 1
  float max_code_;  // asymmetric: 2^N − 1
};

}  // namespace

std::unique_ptr<Quantizer> make_group_quantizer(const QuantizerSpec& spec) {
  return std::make_unique<GroupQuantizer>(spec);
}

}  // namespace cq::quant_detail
