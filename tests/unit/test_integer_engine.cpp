// The integer engine (ptq/integer_linear.h) against the fake-quant path: one backend on
// random matrices, then perplexity on the shared trained models. Tolerances (SPEC.md): W8
// settings to 0.1 %, W4 settings to 2 % (4-bit codes near a rounding boundary flip between
// two float32 computations that sum in different orders).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <filesystem>
#include <random>

#include "eval/perplexity.h"
#include "io/safetensors.h"
#include "model/transformer.h"
#include "quant/crossquant.h"
#include "quant/flag_effects.h"
#include "ptq/integer_linear.h"
#include "ptq/apply_quantization.h"
#include "quant/quant_config.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/text_file.h"

namespace cq {
namespace {

std::vector<float> random_values(int64_t count, uint32_t seed, float scale) { return test::random_normal(count, seed, scale); }

struct RandomLayer {
  int64_t out = 70, in = 200, rows = 37, sequence_length = 20;  // odd sizes, two sequences (20 + 17)
  std::vector<float> w, x, bias;
  explicit RandomLayer(int64_t in_features = 200) : in(in_features) {
    w = random_values(out * in, 1, 0.05f);
    x = random_values(rows * in, 2, 1.f);
    for (int64_t i = 0; i < rows; ++i) x[static_cast<size_t>(i * in + 3)] *= 30.f;  // an outlier channel
    bias = random_values(out, 3, 0.1f);
  }
};

// y = r_i · Σ_j code_ij · f_j · ŵ_kj + b_k in double, with ŵ the fake-quantized weight given.
std::vector<double> reference_output(const RandomLayer& layer, const Quantizer& activation, const std::vector<float>& w_hat,
                                     KernelStats& stats) {
  std::vector<double> y(static_cast<size_t>(layer.rows * layer.out));
  for (int64_t start = 0; start < layer.rows; start += layer.sequence_length) {
    const int64_t count = std::min(layer.sequence_length, layer.rows - start);
    std::vector<float> xs(layer.x.begin() + start * layer.in, layer.x.begin() + (start + count) * layer.in);
    const QuantizedMatrix q = activation.quantize(MatrixView{xs.data(), count, layer.in, layer.in}, &stats);
    for (int64_t i = 0; i < count; ++i)
      for (int64_t k = 0; k < layer.out; ++k) {
        double sum = 0;
        for (int64_t j = 0; j < layer.in; ++j) sum += q.codes[static_cast<size_t>(i * layer.in + j)] * static_cast<double>(w_hat[static_cast<size_t>(k * layer.in + j)]);
        const double row_scale = q.row_scales.empty() ? q.tensor_scale : q.row_scales[static_cast<size_t>(i)];
        y[static_cast<size_t>((start + i) * layer.out + k)] = row_scale * sum + layer.bias[static_cast<size_t>(k)];
      }
  }
  return y;
}

void expect_close(const std::vector<float>& got, const std::vector<double>& want, double tolerance) {
  ASSERT_EQ(got.size(), want.size());
  double max_abs = 0, max_err = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    max_abs = std::max(max_abs, std::abs(want[i]));
    max_err = std::max(max_err, std::abs(got[i] - want[i]));
  }
  EXPECT_LE(max_err, tolerance * max_abs) << "max error " << max_err << " of max |y| " << max_abs;
}

std::shared_ptr<const Quantizer> quantizer(const std::string& method, int bits, int64_t group = 128,
                                           std::vector<float> static_c = {}) {
  QuantizerSpec spec;
  spec.method = method;
  spec.bits = bits;
  spec.group_size = group;
  spec.alpha = 0.15;
  spec.static_column_absmax = std::move(static_c);
  return make_quantizer(spec);
}

std::vector<float> fake_weights(const Quantizer& weight, std::vector<float> w, int64_t out, int64_t in) {
  weight.fake_quantize(MatrixView{w.data(), out, in, in}, nullptr);
  return w;
}

// Runs the backend of `options` on `layer` and compares it with x̂·ŵᵀ + b of the fake path
// (up to float sums), kernel statistics included.
KernelStats expect_backend_matches_fake(const RandomLayer& layer, const IntegerLinearOptions& options) {
  IntegerLinear backend(options, layer.w, layer.out, layer.in, layer.bias);
  std::vector<float> y(static_cast<size_t>(layer.rows * layer.out));
  KernelStats stats, want_stats;
  backend.run(layer.x.data(), RowWindows(layer.rows, layer.sequence_length), y.data(), stats);
  const auto w_hat = fake_weights(*options.weight, layer.w, layer.out, layer.in);
  expect_close(y, reference_output(layer, *options.activation, w_hat, want_stats), 1e-5);
  test::expect_same_stats(stats, want_stats);
  return stats;
}

// Per-token / per-channel: the backend equals x̂·ŵᵀ + b of the fake path (up to float sums).
TEST(IntegerEngine, PerTokenBackendEqualsFakeComputation) {
  for (int wbits : {8, 4}) {
    const RandomLayer layer;
    IntegerLinearOptions options;
    options.activation = quantizer("per-token", 8);
    options.weight = quantizer("per-channel", wbits);
    const KernelStats stats = expect_backend_matches_fake(layer, options);
    EXPECT_EQ(stats.elements, layer.rows * layer.in);
  }
}

TEST(IntegerEngine, GroupWiseInt4BackendEqualsFakeComputation) {
  const RandomLayer layer(300);  // groups of 128: 128 + 128 + 44
  for (int abits : {8, 4}) {
    IntegerLinearOptions options;
    options.activation = quantizer("per-token", abits);
    options.weight = quantizer("group", 4, 128);
    expect_backend_matches_fake(layer, options);
  }
}

// Static CrossQuant: y = r_i Σ_j code_ij · Q(W·diag(c^(1−α)))_kj; the activation codes and the
// kernel statistics are those of CrossQuantQuantizer::quantize with the calibrated c.
TEST(IntegerEngine, StaticCrossQuantBackendFoldsColumnFactorsIntoWeights) {
  const RandomLayer layer;
  std::vector<float> c;
  CrossQuantQuantizer::accumulate_column_absmax(MatrixView{const_cast<float*>(layer.x.data()), 20, layer.in, layer.in}, c);
  for (int wbits : {8, 4}) {
    IntegerLinearOptions options;
    options.activation = quantizer("crossquant", 8, 128, c);
    options.weight = quantizer("per-channel", wbits);
    IntegerLinear backend(options, layer.w, layer.out, layer.in, layer.bias);
    std::vector<float> y(static_cast<size_t>(layer.rows * layer.out));
    KernelStats stats, want_stats;
    backend.run(layer.x.data(), RowWindows(layer.rows, layer.sequence_length), y.data(), stats);
    const auto& cross = dynamic_cast<const CrossQuantQuantizer&>(*options.activation);
    const auto f = cross.column_divisors(c);
    std::vector<float> folded = layer.w;
    for (int64_t k = 0; k < layer.out; ++k)
      for (int64_t j = 0; j < layer.in; ++j) folded[static_cast<size_t>(k * layer.in + j)] *= f[static_cast<size_t>(j)];
    const auto w_hat = fake_weights(*options.weight, folded, layer.out, layer.in);
    expect_close(y, reference_output(layer, *options.activation, w_hat, want_stats), 1e-5);
    test::expect_same_stats(stats, want_stats);
    EXPECT_GT(stats.clipped, 0);  // the second sequence exceeds the calibrated c somewhere
  }
}

// Re-quantizing into kept storage (dynamic CrossQuant, per window) equals quantizing the scaled
// matrix from scratch, bit for bit, for every weight layout; 130 rows = two full panels and
// a partial one, and the second call reuses the storage the first one allocated.
TEST(IntegerEngine, RequantizeScaledEqualsQuantizingTheScaledMatrix) {
  const int64_t out = 130, in = 200, rows = 5;
  auto w = random_values(out * in, 11, 0.05f);
  std::fill(w.begin() + 3 * in, w.begin() + 4 * in, 0.f);  // a zero row: Δ = 1, codes 0
  const auto x = random_values(rows * in, 12, 1.f);
  std::vector<int8_t> codes(x.size());
  for (size_t i = 0; i < x.size(); ++i) codes[i] = static_cast<int8_t>(std::lround(std::clamp(x[i] * 40.f, -127.f, 127.f)));
  const std::vector<float> row_scales(rows, 0.01f);
  QuantizerSpec asymmetric_group;
  asymmetric_group.method = "group";
  asymmetric_group.bits = 4;
  asymmetric_group.group_size = 64;
  asymmetric_group.asymmetric = true;
  for (const auto& weight : {quantizer("per-channel", 8), quantizer("per-channel", 4), quantizer("group", 4, 128),
                             std::shared_ptr<const Quantizer>(make_quantizer(asymmetric_group))}) {
    SCOPED_TRACE(weight->spec().method + " W" + std::to_string(weight->spec().bits));
    PackedLinearWeights reused;
    for (uint32_t seed : {21u, 22u}) {
      std::vector<float> f = random_values(in, seed, 1.f);
      for (float& v : f) v = std::exp(v);
      std::vector<float> scaled = w;
      for (int64_t k = 0; k < out; ++k)
        for (int64_t j = 0; j < in; ++j) scaled[static_cast<size_t>(k * in + j)] *= f[static_cast<size_t>(j)];
      const PackedLinearWeights fresh = PackedLinearWeights::quantize(*weight, scaled.data(), out, in);
      reused.requantize_scaled(*weight, w.data(), out, in, f);
      std::vector<float> want(static_cast<size_t>(rows * out)), got(want.size());
      fresh.gemm(codes.data(), rows, row_scales.data(), nullptr, want.data());
      reused.gemm(codes.data(), rows, row_scales.data(), nullptr, got.data());
      EXPECT_EQ(got, want);
    }
  }
}

// The fused per-channel row path leaves a non-finite weight to the quantizer, which names it.
TEST(IntegerEngine, RequantizeScaledRefusesNonFiniteWeights) {
  const int64_t out = 70, in = 24;
  auto w = random_values(out * in, 13, 0.05f);
  w[static_cast<size_t>(66 * in + 5)] = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> f(static_cast<size_t>(in), 1.5f);
  PackedLinearWeights packed;
  for (const auto& weight : {quantizer("per-channel", 8), quantizer("per-channel", 4)}) {
    EXPECT_THROW(packed.requantize_scaled(*weight, w.data(), out, in, f), Error);
  }
}

// Dynamic CrossQuant: weights re-quantized per window with that window's c.
TEST(IntegerEngine, DynamicCrossQuantBackendRequantizesPerWindow) {
  const RandomLayer layer;
  for (const auto& weight : {quantizer("per-channel", 8), quantizer("group", 4, 128)}) {
    SCOPED_TRACE(weight->spec().method);
    IntegerLinearOptions options;
    options.activation = quantizer("crossquant", 8);
    options.weight = weight;
    IntegerLinear backend(options, layer.w, layer.out, layer.in, layer.bias);
    std::vector<float> y(static_cast<size_t>(layer.rows * layer.out));
    KernelStats stats;
    backend.run(layer.x.data(), RowWindows(layer.rows, layer.sequence_length), y.data(), stats);
    std::vector<double> want(y.size());
    KernelStats want_stats;
    for (int64_t start = 0; start < layer.rows; start += layer.sequence_length) {
      const int64_t count = std::min(layer.sequence_length, layer.rows - start);
      RandomLayer window = layer;
      window.rows = count;
      window.sequence_length = count;
      window.x.assign(layer.x.begin() + start * layer.in, layer.x.begin() + (start + count) * layer.in);
      std::vector<float> c;
      CrossQuantQuantizer::accumulate_column_absmax(MatrixView{window.x.data(), count, layer.in, layer.in}, c);
      const auto& cross = dynamic_cast<const CrossQuantQuantizer&>(*options.activation);
      const auto f = cross.column_divisors(c);
      std::vector<float> folded = layer.w;
      for (int64_t k = 0; k < layer.out; ++k)
        for (int64_t j = 0; j < layer.in; ++j) folded[static_cast<size_t>(k * layer.in + j)] *= f[static_cast<size_t>(j)];
      const auto part = reference_output(window, *options.activation, fake_weights(*options.weight, folded, layer.out, layer.in), want_stats);
      std::copy(part.begin(), part.end(), want.begin() + start * layer.out);
    }
    expect_close(y, want, 1e-5);
    test::expect_same_stats(stats, want_stats);
  }
}

// --engine auto (the default of cq generate and cq bench): int exactly where the integer path
// computes the fake engine's model.
TEST(IntegerEngine, AutoEngineRunsIntegerKernelsWhereTheyComputeTheSameModel) {
  const auto dir = test::synthetic_model("llama-gqa");
  struct Case {
    std::string scheme, activation;
    bool calibrated;
    std::string expected;
  };
  for (const Case& c : {Case{"w8a8", "per-token", false, "int"}, Case{"w4a8-g128", "per-token", false, "int"},
                        Case{"w8a8", "crossquant", true, "int"}, Case{"w8a8", "crossquant", false, "fake"},
                        Case{"w8a8", "remove-kernel", false, "fake"}, Case{"", "per-token", false, "fake"}}) {
    SCOPED_TRACE(c.scheme + " " + c.activation);
    Transformer model(dir);
    QuantConfig config;
    config.engine = "auto";
    if (!c.scheme.empty()) config.apply_scheme(c.scheme);
    config.activation_method = c.activation;
    std::vector<int32_t> calibration;
    if (c.calibrated) {
      config.static_columns = true;
      config.calib_samples = 2;
      config.calib_seqlen = 16;
      for (int32_t t = 0; t < 32; ++t) calibration.push_back(3 + t % 50);
    }
    EXPECT_EQ(apply_quantization(model, config, calibration).applied.engine, c.expected);
  }
}

// Records lm_head's input and writes zero logits: the final hidden states of a forward.
class RecordingHead final : public LinearBackend {
 public:
  void run(const float* x, const RowWindows& windows, float* y, KernelStats&) override {
    inputs.assign(x, x + windows.rows() * in);
    std::fill(y, y + windows.rows() * out, 0.f);
  }
  int64_t in = 0, out = 0;
  std::vector<float> inputs;
};

// --quantize-lm-head: logits = Σ_j a_ij q_kj · Δ_i Δ_k with a = round(h_i / Δ_i), Δ_i =
// max|h_i| / 127 (per token) and q = round(W_k / Δ_k), Δ_k = max|W_k| / 127 (per channel),
// computed here from that definition on the final hidden states h of the same forward.
TEST(IntegerEngine, QuantizedLmHeadIsThePerTokenPerChannelInt8Product) {
  const auto dir = test::synthetic_model("llama-gqa");
  const std::vector<int32_t> tokens = {5, 17, 3, 42, 8, 29, 11};
  const auto rows = static_cast<int64_t>(tokens.size());
  QuantConfig config;
  config.engine = "int";
  config.apply_scheme("w8a8");
  config.activation_method = "per-token";

  Transformer recorded(dir);
  apply_quantization(recorded, config, {});
  const TensorInfo& head = recorded.lm_head_weight();
  const int64_t vocab = head.shape[0], hidden = head.shape[1];
  auto recorder = std::make_shared<RecordingHead>();
  recorder->in = hidden;
  recorder->out = vocab;
  recorded.set_lm_head_backend(recorder);
  std::vector<float> logits(static_cast<size_t>(rows * vocab));
  recorded.forward(tokens, 1, rows, logits);
  ASSERT_EQ(static_cast<int64_t>(recorder->inputs.size()), rows * hidden);

  config.quantize_lm_head = true;
  Transformer model(dir);
  apply_quantization(model, config, {});
  model.forward(tokens, 1, rows, logits);

  std::vector<float> w(static_cast<size_t>(vocab * hidden));
  convert_to_f32(head, 0, vocab * hidden, w.data());
  const auto codes_of = [](const float* v, int64_t n, double& delta) {
    float absmax = 0.f;
    for (int64_t j = 0; j < n; ++j) absmax = std::max(absmax, std::fabs(v[j]));
    const float d = absmax > 0.f ? absmax / 127.f : 1.f;
    delta = d;
    std::vector<double> codes(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) codes[static_cast<size_t>(j)] = std::nearbyint(v[j] / d);
    return codes;
  };
  double max_gap_to_fp32 = 0.0;
  for (int64_t i = 0; i < rows; ++i) {
    const float* h = recorder->inputs.data() + i * hidden;
    double delta_i = 0.0;
    const auto a = codes_of(h, hidden, delta_i);
    for (int64_t k = 0; k < vocab; ++k) {
      double delta_k = 0.0;
      const auto q = codes_of(w.data() + k * hidden, hidden, delta_k);
      double dot = 0.0, fp32 = 0.0;
      for (int64_t j = 0; j < hidden; ++j) {
        dot += a[static_cast<size_t>(j)] * q[static_cast<size_t>(j)];
        fp32 += double{h[j]} * w[static_cast<size_t>(k * hidden + j)];
      }
      const double expected = dot * delta_i * delta_k;
      const double got = logits[static_cast<size_t>(i * vocab + k)];
      ASSERT_NEAR(got, expected, 1e-5 * (1.0 + std::fabs(expected))) << "row " << i << " token " << k;
      max_gap_to_fp32 = std::max(max_gap_to_fp32, std::fabs(got - fp32));
    }
  }
  EXPECT_GT(max_gap_to_fp32, 1e-6);  // the flag changes the logits: lm_head really is INT8
}

TEST(IntegerEngine, QuantizedLmHeadNeedsTheIntegerEngine) {
  QuantConfig config;
  config.apply_scheme("w8a8");
  config.quantize_lm_head = true;
  config.engine = "fake";
  EXPECT_EQ(flags_without_effect({"--quantize-lm-head"}, config).size(), 1u);
  Transformer model(test::synthetic_model("llama-gqa"));
  EXPECT_THROW(apply_quantization(model, config, {}), Error);
  config.engine = "int";
  EXPECT_TRUE(flags_without_effect({"--quantize-lm-head"}, config).empty());
}

TEST(IntegerEngine, UnsupportedConfigurationsAreErrors) {
  QuantConfig config;
  config.engine = "int";
  config.apply_scheme("w8a8");
  config.activation_method = "remove-kernel";
  EXPECT_THROW(config.validate(), Error);
  config.activation_method = "per-token";
  EXPECT_NO_THROW(config.validate());
  config.weight_method = "group";  // W8 group-wise: no kernel
  EXPECT_THROW(config.validate(), Error);
  config.apply_scheme("w16a16");
  // Unquantized weights may be a quantized checkpoint's (known once loaded): apply_quantization
  // decides, and refuses an ordinary model's FP32 weights.
  EXPECT_NO_THROW(config.validate());
  Transformer model(test::synthetic_model("opt-pre"));
  EXPECT_NE(test::error_of([&] { apply_quantization(model, config); }).find("needs quantized weights and activations"),
            std::string::npos);
  config.apply_scheme("w4a8-g128");
  EXPECT_NO_THROW(config.validate());
  config.engine = "fast";
  EXPECT_THROW(config.validate(), Error);
}

// ---- perplexity on the shared models ------------------------------------------------------

struct PplCase {
  std::string model;
  std::string scheme;
  std::string act;      // per-token | crossquant
  bool calibrated;      // static CrossQuant
};

void PrintTo(const PplCase& c, std::ostream* out) {
  *out << c.model << "_" << c.scheme << "_" << c.act << (c.calibrated ? "_static" : "");
}

// Each model on text of its own domain (stories260k was trained on TinyStories), windows of
// 256 tokens, 64 for stories260k (24 suffice for tinyopt, whose differences are ten times
// smaller): the two engines' float roundings differ (exact integer sums
// against FP32 sums of fake-quantized values), which flips a few codes that sit on a rounding
// boundary; the effect on perplexity averages out over more tokens (docs/INTEGER_ENGINE.md).
std::filesystem::path evaluation_text(const std::string& model) {
  return model == "stories260k" ? "data/tinystories/TinyStories-valid.first100.txt"
                                : "data/wikitext2/wikitext2_test_joined.prefix.txt";
}

class IntegerEnginePerplexity : public testing::TestWithParam<PplCase> {};

// The bar: the integer path's perplexity equals the fake path's to 0.1 %. Static
// CrossQuant folds c^(1−α) into the weights in both engines (folds_static_columns).
TEST_P(IntegerEnginePerplexity, EqualsFakePathWithinATenthOfAPercent) {
  const PplCase& c = GetParam();
  CQ_NEED_SHARED("models/" + c.model);
  CQ_NEED_SHARED(evaluation_text(c.model));
  const auto model_dir = test::shared_dir() / "models" / c.model;
  const auto tokenizer = load_tokenizer(model_dir);
  const auto tokens = tokenizer->encode(read_text_file(test::shared_dir() / evaluation_text(c.model)), true);
  QuantConfig config;
  config.apply_scheme(c.scheme);
  config.activation_method = c.act;
  config.static_columns = c.calibrated;
  config.calib_samples = 8;
  config.calib_seqlen = 256;
  std::span<const int32_t> calibration;
  if (c.calibrated) calibration = tokens;
  PerplexityOptions options;
  options.seqlen = 256;
  options.max_windows = c.model == "stories260k" ? 64 : 24;
  options.show_progress = false;
  double ppl[2];
  KernelStats stats[2];
  for (int engine = 0; engine < 2; ++engine) {
    config.engine = engine == 0 ? "fake" : "int";
    Transformer model(model_dir);
    apply_quantization(model, config, calibration);
    ppl[engine] = evaluate_perplexity(model, tokens, options).perplexity;
    stats[engine] = model.total_kernel_stats();
  }
  const double relative = std::abs(ppl[1] - ppl[0]) / ppl[0];
  RecordProperty("relative_difference", std::to_string(relative));
  std::cout << "[ perplexity ] fake " << ppl[0] << " int " << ppl[1] << " relative difference " << relative << "\n";
  EXPECT_LE(relative, 1e-3) << "fake " << ppl[0] << " int " << ppl[1];
  EXPECT_EQ(stats[0].elements, stats[1].elements);
  EXPECT_GT(stats[1].kernel, 0);
  // The inputs differ slightly between the engines (the flipped codes above), so the kernel
  // counts agree closely rather than exactly.
  EXPECT_NEAR(static_cast<double>(stats[1].kernel), static_cast<double>(stats[0].kernel), 0.01 * static_cast<double>(stats[0].kernel) + 10);
}

INSTANTIATE_TEST_SUITE_P(IntegerEngine, IntegerEnginePerplexity,
                         testing::Values(PplCase{"stories260k", "w8a8", "per-token", false},
                                         PplCase{"stories260k", "w8a8", "crossquant", true},
                                         PplCase{"stories260k", "w4a8-g128", "per-token", false},
                                         PplCase{"stories260k", "w4a8-g128", "crossquant", true},
                                         PplCase{"stories260k", "w4a4", "per-token", false},
                                         PplCase{"tinyopt", "w8a8", "per-token", false},
                                         PplCase{"tinyopt", "w8a8", "crossquant", true},
                                         PplCase{"tinyopt", "w4a8-g128", "per-token", false},
                                         PplCase{"tinyopt", "w4a8-g128", "crossquant", true},
                                         PplCase{"tinyopt", "w4a4", "per-token", false}),
                         [](const testing::TestParamInfo<PplCase>& param_info) {
                           std::string name = param_info.param.model + "_" + param_info.param.scheme + "_" + param_info.param.act +
                                              (param_info.param.calibrated ? "_static" : "");
                           for (auto& ch : name)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return name;
                         });

}  // namespace
}  // namespace cq
