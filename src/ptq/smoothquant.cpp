#include "ptq/smoothquant.h"

#include <algorithm>
#include <cmath>

#include "quant/quant_common.h"
#include "util/error.h"

namespace cq {

namespace {
constexpr float kMinimumScale = 1e-5f;  // smooth_ln_fcs clamps weight maxima and s at 1e-5
}

double default_migration_strength(const ModelConfig& config) { return config.default_migration_strength; }

std::vector<int64_t> site_readers(const Transformer& model, int64_t layer, InputSite site) {
  std::vector<int64_t> readers;
  const auto& linears = model.linear_layers();
  for (size_t i = 0; i < linears.size(); ++i)
    if (linears[i].layer == layer && linears[i].site == site) readers.push_back(static_cast<int64_t>(i));
  return readers;
}

void fold_scales_into_norm(Transformer& model, int64_t layer, InputSite site, std::span<const float> scales) {
  if (!model.config().pre_norm)
    fail("smoothing needs a norm before the linears (pre-norm model); this model normalizes after the residual");
  std::vector<float>& weight = model.norm_weight(layer, site);
  std::vector<float>& bias = model.norm_bias(layer, site);
  if (weight.size() != scales.size()) fail("internal error: {} scales for a norm of width {}", scales.size(), weight.size());
  for (size_t j = 0; j < scales.size(); ++j) {
    weight[j] /= scales[j];
    if (!bias.empty()) bias[j] /= scales[j];
  }
  for (int64_t index : site_readers(model, layer, site)) {
    LinearLayer& linear = model.linear_layers()[static_cast<size_t>(index)];
    std::span<float> w = linear.mutable_weight();
    for (int64_t k = 0; k < linear.out_features; ++k)
      for (int64_t j = 0; j < linear.in_features; ++j) w[static_cast<size_t>(k * linear.in_features + j)] *= scales[static_cast<size_t>(j)];
  }
}

void fold_scales_into_linear(Transformer& model, int64_t previous, std::span<const int64_t> next, std::span<const float> scales,
                             int64_t first_row) {
  LinearLayer& prev = model.linear_layers().at(static_cast<size_t>(previous));
  const auto count = static_cast<int64_t>(scales.size());
  if (first_row < 0 || first_row + count > prev.out_features)
    fail("internal error: {} scales from row {} for {} with {} outputs", scales.size(), first_row, prev.name, prev.out_features);
  std::span<float> w = prev.mutable_weight();
  for (int64_t k = first_row; k < first_row + count; ++k) {
    const float s = scales[static_cast<size_t>(k - first_row)];
    for (int64_t j = 0; j < prev.in_features; ++j) w[static_cast<size_t>(k * prev.in_features + j)] /= s;
    if (!prev.bias.empty()) prev.bias[static_cast<size_t>(k)] /= s;
  }
  for (int64_t index : next) {
    LinearLayer& linear = model.linear_layers().at(static_cast<size_t>(index));
    std::span<float> v = linear.mutable_weight();
    for (int64_t k = 0; k < linear.out_features; ++k)
      for (int64_t j = 0; j < linear.in_features; ++j) v[static_cast<size_t>(k * linear.in_features + j)] *= scales[static_cast<size_t>(j)];
  }
}

std::vector<SmoothingFactors> apply_smoothquant(Transformer& model, const CalibrationStats& calibration, double alpha) {
  if (!(alpha >= 0 && alpha <= 1)) fail("--migration-strength {} is outside [0, 1]", alpha);
  if (!model.config().pre_norm) fail("SmoothQuant needs a pre-norm model (the norm before q/k/v and fc1 absorbs 1/s)");
  std::vector<SmoothingFactors> result;
  for (int64_t layer = 0; layer < model.config().num_layers; ++layer) {
    for (InputSite site : {InputSite::AttentionIn, InputSite::MlpIn}) {
      const std::vector<float>& act_max = calibration.absmax(layer, site);
      const int64_t width = static_cast<int64_t>(act_max.size());
      // max over the output channels of every linear sharing the input (torch.cat + max).
      std::vector<float> weight_max(static_cast<size_t>(width), 0.f);
      for (int64_t index : site_readers(model, layer, site)) {
        LinearLayer& linear = model.linear_layers()[static_cast<size_t>(index)];
        if (linear.in_features != width) fail("internal error: calibration width {} for {}", width, linear.name);
        std::span<const float> w = linear.mutable_weight();
        for (int64_t k = 0; k < linear.out_features; ++k)
          for (int64_t j = 0; j < width; ++j)
            weight_max[static_cast<size_t>(j)] = std::max(weight_max[static_cast<size_t>(j)], std::abs(w[static_cast<size_t>(k * width + j)]));
      }
      SmoothingFactors factors{layer, site, std::vector<float>(static_cast<size_t>(width))};
      for (int64_t j = 0; j < width; ++j) {
        const float w_max = std::max(weight_max[static_cast<size_t>(j)], kMinimumScale);
        const float s = std::pow(act_max[static_cast<size_t>(j)], static_cast<float>(alpha)) /
                        std::pow(w_max, static_cast<float>(1 - alpha));
        factors.scales[static_cast<size_t>(j)] = std::max(s, kMinimumScale);
      }
      fold_scales_into_norm(model, layer, site, factors.scales);
      result.push_back(std::move(factors));
    }
  }
  return result;
}

namespace {

class StaticPerTensorQuantizer final : public Quantizer {
 public:
  StaticPerTensorQuantizer(int bits, float absmax) {
    spec_.method = "per-tensor";
    spec_.bits = bits;
    qmax_ = quant_detail::symmetric_qmax(bits, spec_.method);
    scale_ = quant_detail::nonzero_divisor(absmax / qmax_);
  }
  const QuantizerSpec& spec() const override { return spec_; }
  void fake_quantize(MatrixView x, KernelStats* stats) const override {
    quant_detail::check_view(x, spec_.method);
    const quant_detail::RowPass pass = scan(x);
    const auto counts = quant_detail::for_each_row(
        x, [&](int64_t i) { return quant_kernels::fake_quantize_row(x.row(i), x.cols, scale_, qmax_); });
    if (stats != nullptr) quant_detail::add_stats(stats, x, counts, pass.exact_zeros, {});
  }
  QuantizedMatrix quantize(MatrixView x, KernelStats* stats) const override {
    quant_detail::check_view(x, spec_.method);
    const quant_detail::RowPass pass = scan(x);
    QuantizedMatrix quantized;
    quantized.rows = x.rows;
    quantized.cols = x.cols;
    quantized.bits = spec_.bits;
    quantized.tensor_scale = scale_;
    quantized.codes.resize(static_cast<size_t>(x.rows * x.cols));
    const auto counts = quant_detail::for_each_row(x, [&](int64_t i) {
      return quant_kernels::quantize_row_codes(x.row(i), x.cols, scale_, qmax_, quantized.codes.data() + i * x.cols);
    });
    if (stats != nullptr) quant_detail::add_stats(stats, x, counts, pass.exact_zeros, {});
    return quantized;
  }

 private:
  quant_detail::RowPass scan(const MatrixView& x) const {
    return quant_detail::scan_rows(x, false, spec_.method, [](int64_t, float) { return quant_kernels::RowCounts{}; });
  }
  QuantizerSpec spec_;
  float qmax_ = 127.f, scale_ = 1.f;
};

}  // namespace

std::unique_ptr<Quantizer> make_static_per_tensor_quantizer(int bits, float calibrated_absmax) {
  return std::make_unique<StaticPerTensorQuantizer>(bits, calibrated_absmax);
}

}  // namespace cq
