// SmoothQuant and AWQ: exact folding (FP32 logits unchanged to 1e-5 relative) and the
// independent PyTorch reference tests/reference/baselines_reference.py (smoothing factors,
// AWQ's chosen ratios, scales and clip values, perplexities) on the shared models.
// Tolerances: AWQ ratios exactly, scales 1e-4 relative (float32 pow/mean order); W8 and
// AWQ per-token perplexities 0.1 %. Clip values: up to 1 % may differ (a near-tie between
// two shrink steps resolves differently with float32 vs double sums; 19 of 2840 on
// stories260k), which moves CrossQuant+AWQ by ~0.13 %: checked at 0.5 % (SPEC.md: W4 at 2 %).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "eval/perplexity.h"
#include "model/transformer.h"
#include "ptq/awq.h"
#include "ptq/calibration.h"
#include "ptq/apply_quantization.h"
#include "quant/quant_config.h"
#include "ptq/smoothquant.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/text_file.h"

namespace cq {
namespace {

constexpr const char* kCalibText = "data/wikitext2/wikitext2_test_joined.prefix.txt";
constexpr const char* kEvalText = "data/tinystories/TinyStories-valid.first100.txt";

nlohmann::json baseline_golden(const std::string& model) {
  return nlohmann::json::parse(read_text_file(test::source_dir() / "tests/golden/baselines" / (model + ".json")));
}

std::vector<int32_t> shared_tokens(const std::filesystem::path& model_dir, const char* text) {
  return load_tokenizer(model_dir)->encode(read_text_file(test::shared_dir() / text), true);
}

std::vector<float> logits_of(Transformer& model, std::span<const int32_t> tokens, int64_t length) {
  std::vector<float> logits(static_cast<size_t>(length * model.config().vocab_size));
  model.forward(tokens.first(static_cast<size_t>(length)), 1, length, logits);
  return logits;
}

double max_relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double max_diff = 0, max_abs = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    max_diff = std::max(max_diff, std::abs(static_cast<double>(a[i]) - b[i]));
    max_abs = std::max(max_abs, std::abs(static_cast<double>(a[i])));
  }
  return max_diff / max_abs;
}

QuantConfig golden_config(const std::string& method, const std::string& activations) {
  QuantConfig config;
  config.method = method;
  config.calib_samples = 16;
  config.calib_seqlen = 256;
  if (method == "smoothquant") {
    config.apply_scheme("w8a8");
  } else {
    config.apply_scheme("w4a8-g128");
    config.weight_asymmetric = true;
  }
  config.activation_method = activations;
  return config;
}

double perplexity_of(Transformer& model, std::span<const int32_t> tokens, double* kernel = nullptr) {
  PerplexityOptions options;
  options.seqlen = 256;
  options.batch = 8;
  options.show_progress = false;
  model.reset_kernel_stats();
  const double ppl = evaluate_perplexity(model, tokens, options).perplexity;
  if (kernel) *kernel = model.total_kernel_stats().kernel_fraction();
  return ppl;
}

class BaselinesShared : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(test::shared_dir() / "models" / GetParam())) {
      if (test::shared_required()) FAIL() << "missing shared model " << GetParam();
      GTEST_SKIP() << "shared model " << GetParam() << " not found (set CQ_SHARED)";
    }
    model_dir_ = test::shared_dir() / "models" / GetParam();
    calib_ = shared_tokens(model_dir_, kCalibText);
    eval_ = shared_tokens(model_dir_, kEvalText);
  }
  std::filesystem::path model_dir_;
  std::vector<int32_t> calib_, eval_;
};

TEST_P(BaselinesShared, FoldingIsExactInFp32) {
  Transformer original(model_dir_);
  const auto reference = logits_of(original, eval_, 256);
  CalibrationOptions calibration{4, 256, false};
  {
    Transformer smoothed(model_dir_);
    const auto stats = calibrate(smoothed, calib_, calibration);
    apply_smoothquant(smoothed, stats, default_migration_strength(smoothed.config()));
    EXPECT_LT(max_relative_difference(reference, logits_of(smoothed, eval_, 256)), 1e-5) << "SmoothQuant";
  }
  {
    Transformer scaled(model_dir_);
    AwqOptions options;
    options.weight.method = "group";
    options.weight.bits = 4;
    options.weight.asymmetric = true;
    options.clip = false;  // clipping changes the weights on purpose; the scales alone must not
    options.show_progress = false;
    const AwqResult result = apply_awq(scaled, calib_, calibration, options);
    EXPECT_FALSE(result.scales.empty());
    EXPECT_LT(max_relative_difference(reference, logits_of(scaled, eval_, 256)), 1e-5) << "AWQ scales";
  }
}

TEST_P(BaselinesShared, SmoothQuantMatchesTheReference) {
  const auto golden = baseline_golden(GetParam());
  Transformer model(model_dir_);
  const QuantizationRecord record = apply_quantization(model, golden_config("smoothquant", "per-token"), calib_);
  EXPECT_DOUBLE_EQ(record.migration_strength, golden["migration_strength"].get<double>());
  const auto& factors = golden["smoothquant"];
  ASSERT_EQ(record.smoothing.size(), factors.size());
  for (size_t n = 0; n < factors.size(); ++n) {
    const auto expected = factors[n]["scales"].get<std::vector<float>>();
    ASSERT_EQ(record.smoothing[n].scales.size(), expected.size());
    for (size_t j = 0; j < expected.size(); ++j)
      ASSERT_NEAR(record.smoothing[n].scales[j], expected[j], 1e-4 * std::abs(expected[j])) << factors[n]["norm"] << " channel " << j;
  }
  double kernel = 0;
  const double expected = golden["settings"]["smoothquant_w8a8_per_token"]["ppl"].get<double>();
  EXPECT_NEAR(perplexity_of(model, eval_, &kernel), expected, 1e-3 * expected);
  EXPECT_NEAR(kernel, golden["settings"]["smoothquant_w8a8_per_token"]["kernel_proportion"].get<double>(), 1e-3);
}

TEST_P(BaselinesShared, AwqMatchesTheReference) {
  const auto golden = baseline_golden(GetParam());
  Transformer model(model_dir_);
  QuantConfig config = golden_config("awq", "per-token");
  const QuantizationRecord record = apply_quantization(model, config, calib_);
  const auto& scales = golden["awq_scales"];
  ASSERT_EQ(record.awq.scales.size(), scales.size());
  for (size_t n = 0; n < scales.size(); ++n) {
    const AwqScaleRecord& got = record.awq.scales[n];
    EXPECT_EQ(got.previous, scales[n]["previous"].get<std::string>());
    ASSERT_DOUBLE_EQ(got.ratio, scales[n]["ratio"].get<double>()) << got.previous;
    EXPECT_NEAR(got.loss, scales[n]["loss"].get<double>(), 1e-3 * scales[n]["loss"].get<double>()) << got.previous;
    const auto expected = scales[n]["scales"].get<std::vector<float>>();
    for (size_t j = 0; j < expected.size(); ++j)
      ASSERT_NEAR(got.scales[j], expected[j], 1e-4 * std::abs(expected[j])) << got.previous << " channel " << j;
  }
  const auto& clips = golden["awq_clips"];
  ASSERT_EQ(record.awq.clips.size(), clips.size());
  int64_t values = 0, different = 0;
  for (size_t n = 0; n < clips.size(); ++n) {
    const AwqClipRecord& got = record.awq.clips[n];
    EXPECT_EQ(got.linear, clips[n]["linear"].get<std::string>());
    const auto expected = clips[n]["max_values"].get<std::vector<std::vector<float>>>();
    for (size_t k = 0; k < expected.size(); ++k)
      for (size_t g = 0; g < expected[k].size(); ++g, ++values) {
        const float e = expected[k][g];
        if (std::abs(got.max_values[k * static_cast<size_t>(got.groups_per_row) + g] - e) > 1e-4f * std::abs(e)) ++different;
      }
  }
  // A near-tie between two shrink steps may resolve differently in another summation order.
  EXPECT_LE(different, values / 100) << different << " of " << values << " clip values differ";
  double kernel = 0;
  const double expected = golden["settings"]["awq_w4a8_g128_per_token"]["ppl"].get<double>();
  EXPECT_NEAR(perplexity_of(model, eval_, &kernel), expected, 1e-3 * expected);
  EXPECT_NEAR(kernel, golden["settings"]["awq_w4a8_g128_per_token"]["kernel_proportion"].get<double>(), 1e-3);
  // CrossQuant + AWQ: the same weights with CrossQuant activations.
  install_activation_quantizers(model, golden_config("awq", "crossquant"), {});
  const double expected_cq = golden["settings"]["awq_w4a8_g128_crossquant_a0.15"]["ppl"].get<double>();
  EXPECT_NEAR(perplexity_of(model, eval_), expected_cq, 5e-3 * expected_cq);
}

// The README's SmoothQuant rows (cq sweep --method smoothquant): the smoothed weights rounded
// per scheme, per-token and CrossQuant α=0.15 activations. Tolerances: 8-bit activations 0.1 %
// and kernel 2e-4 (W4A8 weights are rounded once from the same floats: measured <= 5e-5);
// 4-bit activations 2 % / 2e-3 (codes flip at rounding boundaries, SPEC.md).
TEST_P(BaselinesShared, SmoothQuantRowsOfEverySchemeMatchTheReference) {
  const auto golden = baseline_golden(GetParam());
  for (const char* scheme : {"w8a8", "w4a8-g128", "w4a4"}) {
    for (const char* activations : {"per-token", "crossquant"}) {
      std::string key = std::string("smoothquant_") + scheme + (std::string(activations) == "crossquant" ? "_crossquant_a0.15" : "_per_token");
      std::replace(key.begin(), key.end(), '-', '_');
      SCOPED_TRACE(key);
      ASSERT_TRUE(golden["settings"].contains(key));
      QuantConfig config = golden_config("smoothquant", activations);
      config.apply_scheme(scheme);
      Transformer model(model_dir_);
      apply_quantization(model, config, calib_);
      double kernel = 0;
      const double expected = golden["settings"][key]["ppl"].get<double>();
      const bool four_bit_activations = std::string(scheme) == "w4a4";
      EXPECT_NEAR(perplexity_of(model, eval_, &kernel), expected, (four_bit_activations ? 2e-2 : 1e-3) * expected);
      EXPECT_NEAR(kernel, golden["settings"][key]["kernel_proportion"].get<double>(), four_bit_activations ? 2e-3 : 2e-4);
    }
  }
}

// Plain rounding rows the ppl goldens lack: W4 groups of 128 asymmetric (AWQ's quantizer
// without AWQ's scales) and symmetric, W4A4 per-token; per-tensor activations at model level,
// dynamic (Δ of each window) and static (Δ from the calibration text).
TEST_P(BaselinesShared, RoundingAndPerTensorRowsMatchTheReference) {
  const auto golden = baseline_golden(GetParam());
  struct Row {
    const char* key;
    const char* scheme;
    const char* activations;
    bool asymmetric, static_scale;
  };
  for (const Row& row : {Row{"w4a8_g128_asym_per_token", "w4a8-g128", "per-token", true, false},
                         Row{"w4a8_g128_asym_crossquant_a0.15", "w4a8-g128", "crossquant", true, false},
                         Row{"w4a8_g128_per_token", "w4a8-g128", "per-token", false, false},
                         Row{"w4a4_per_token", "w4a4", "per-token", false, false},
                         Row{"w8a8_per_tensor", "w8a8", "per-tensor", false, false},
                         Row{"w8a8_per_tensor_static", "w8a8", "per-tensor", false, true}}) {
    SCOPED_TRACE(row.key);
    ASSERT_TRUE(golden["settings"].contains(row.key));
    QuantConfig config;
    config.apply_scheme(row.scheme);
    config.weight_asymmetric = row.asymmetric;
    config.activation_method = row.activations;
    config.calib_samples = 16;
    config.calib_seqlen = 256;
    config.static_tensor_scale = row.static_scale;
    Transformer model(model_dir_);
    apply_quantization(model, config, row.static_scale ? std::span<const int32_t>(calib_) : std::span<const int32_t>());
    double kernel = 0;
    const double expected = golden["settings"][row.key]["ppl"].get<double>();
    const bool four_bit_activations = std::string(row.scheme) == "w4a4";
    EXPECT_NEAR(perplexity_of(model, eval_, &kernel), expected, (four_bit_activations ? 2e-2 : 1e-3) * expected);
    EXPECT_NEAR(kernel, golden["settings"][row.key]["kernel_proportion"].get<double>(), four_bit_activations ? 2e-3 : 2e-4);
  }
}

INSTANTIATE_TEST_SUITE_P(Baselines, BaselinesShared, testing::Values("tinyopt", "stories260k"));

}  // namespace
}  // namespace cq
