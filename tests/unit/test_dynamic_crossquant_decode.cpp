// Dynamic CrossQuant while decoding (docs/INTEGER_ENGINE.md, "Dynamic CrossQuant while
// decoding"): c_j of a token that continues a KV cache is the column maximum over every token
// of its sequence so far, prompt included; the integer engine re-quantizes only the weight
// columns whose factor grew, and packs per-channel INT8 weights in one vector pass
// (quant/scaled_panels.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "kernels/cpu_features.h"
#include "kernels/gemm_int8.h"
#include "kernels/kernel_dispatch.h"
#include "model/transformer.h"
#include "ptq/apply_quantization.h"
#include "ptq/integer_linear.h"
#include "quant/crossquant.h"
#include "quant/quant_config.h"
#include "quant/scaled_panels.h"
#include "test_support.h"
#include "util/error.h"

namespace cq {
namespace {

std::shared_ptr<const Quantizer> make(const std::string& method, int bits, std::vector<float> static_c = {}) {
  QuantizerSpec spec;
  spec.method = method;
  spec.bits = bits;
  spec.alpha = 0.15;
  spec.static_column_absmax = std::move(static_c);
  return make_quantizer(spec);
}

std::vector<float> scaled_by(const std::vector<float>& w, int64_t out, int64_t in, const std::vector<float>& f) {
  std::vector<float> scaled = w;
  for (int64_t k = 0; k < out; ++k)
    for (int64_t j = 0; j < in; ++j) scaled[static_cast<size_t>(k * in + j)] *= f[static_cast<size_t>(j)];
  return scaled;
}

// y of fixed activation codes through packed weights: equal outputs <=> equal codes and scales
// (the codes are ±1-ish random, so every weight code and Δ_k shows in y).
std::vector<float> product(const PackedLinearWeights& packed, int64_t in) {
  const int64_t rows = 3;
  std::vector<int8_t> codes(static_cast<size_t>(rows * in));
  for (size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<int8_t>(static_cast<int>((i * 7919) % 255) - 127);
  const std::vector<float> row_scales = {0.5f, 0.25f, 1.f};
  std::vector<float> y(static_cast<size_t>(rows * packed.out_features()));
  packed.gemm(codes.data(), rows, row_scales.data(), nullptr, y.data());
  return y;
}

// The vector pass (scalar and AVX-512) equals the per-channel quantizer on W·diag(f), bit for
// bit; 130 rows = two full panels and a partial one, 202 inputs = a padded k-quad; a zero row.
TEST(DynamicCrossQuantDecode, PanelRequantizationEqualsQuantizingTheScaledMatrix) {
  const int64_t out = 130, in = 202;
  auto w = test::random_normal(out * in, 31, 0.05f);
  std::fill(w.begin() + 5 * in, w.begin() + 6 * in, 0.f);
  auto f = test::random_normal(in, 32, 1.f);
  for (float& v : f) v = std::exp(v);
  const auto ordered = order_as_int8_panels(w.data(), out, in);
  for (const int bits : {8, 6}) {
    const auto weight = make("per-channel", bits);
    const std::vector<float> want = product(PackedLinearWeights::quantize(*weight, scaled_by(w, out, in, f).data(), out, in), in);
    for (const auto path : {kernels::KernelPath::Scalar, kernels::KernelPath::Avx512}) {
      if (path == kernels::KernelPath::Avx512 && !kernels::cpu_has_avx512()) continue;
      test::ScopedKernelPath scoped(path);
      SCOPED_TRACE(std::string(path == kernels::KernelPath::Scalar ? "scalar" : "avx512") + " W" + std::to_string(bits));
      PackedLinearWeights packed;
      packed.requantize_scaled_panels(*weight, ordered, out, in, f);
      EXPECT_EQ(product(packed, in), want);
    }
  }
}

// Both versions of the panel kernel write the same bytes, compensation, Δ and maxima.
TEST(DynamicCrossQuantDecode, PanelKernelPathsAgreeBitForBit) {
  if (!kernels::cpu_has_avx512()) GTEST_SKIP() << "no AVX-512 on this CPU: only the scalar version runs";
  const int64_t in = 96, k_padded = 96;
  auto w = test::random_normal(64 * in, 33, 0.05f);
  for (int64_t c = 0; c < 64; c += 9) w[static_cast<size_t>(c * in + 7)] = 0.f;
  auto f = test::random_normal(in, 34, 1.f);
  for (float& v : f) v = std::exp(v);
  const auto ordered = order_as_int8_panels(w.data(), 64, in);
  const ScaledPanel panel{ordered.data(), f.data(), k_padded, 8};
  std::vector<int8_t> packed_s(64 * k_padded), packed_v(64 * k_padded);
  std::vector<int32_t> comp_s(64), comp_v(64);
  std::vector<float> scale_s(64), scale_v(64), max_s(64), max_v(64);
  ASSERT_TRUE(scaled_panels_detail::scalar_codes(panel, packed_s.data(), comp_s.data(), scale_s.data(), max_s.data()));
  ASSERT_TRUE(scaled_panels_detail::avx512_codes(panel, packed_v.data(), comp_v.data(), scale_v.data(), max_v.data()));
  EXPECT_EQ(packed_v, packed_s);
  EXPECT_EQ(comp_v, comp_s);
  EXPECT_EQ(scale_v, scale_s);
  EXPECT_EQ(max_v, max_s);
  w[static_cast<size_t>(3 * in + 50)] = std::numeric_limits<float>::infinity();
  const auto bad = order_as_int8_panels(w.data(), 64, in);
  const ScaledPanel bad_panel{bad.data(), f.data(), k_padded, 8};
  EXPECT_FALSE(scaled_panels_detail::scalar_codes(bad_panel, packed_s.data(), comp_s.data(), scale_s.data(), max_s.data()));
  EXPECT_FALSE(scaled_panels_detail::avx512_codes(bad_panel, packed_v.data(), comp_v.data(), scale_v.data(), max_v.data()));
}

TEST(DynamicCrossQuantDecode, PanelRequantizationRefusesNonFiniteWeights) {
  const int64_t out = 70, in = 24;
  auto w = test::random_normal(out * in, 35, 0.05f);
  w[static_cast<size_t>(66 * in + 5)] = std::numeric_limits<float>::quiet_NaN();
  PackedLinearWeights packed;
  EXPECT_THROW(packed.requantize_scaled_panels(*make("per-channel", 8), order_as_int8_panels(w.data(), out, in), out, in,
                                               std::vector<float>(static_cast<size_t>(in), 1.5f)),
               Error);
}

// Growing factors: a few columns grow a little (only their codes change), one raises a few
// channels' maximum (those rows anew), one becomes many channels' maximum (their panels anew);
// then a shrinking one (everything anew).
// Each step equals quantizing the scaled matrix from scratch, bit for bit.
TEST(DynamicCrossQuantDecode, IncrementalRequantizationEqualsTheFullOne) {
  const int64_t out = 200, in = 256;
  auto w = test::random_normal(out * in, 36, 0.05f);
  w[static_cast<size_t>(70 * in + 50)] = 0.5f;  // channel 70's maximum is in column 50
  const auto weight = make("per-channel", 8);
  const auto ordered = order_as_int8_panels(w.data(), out, in);
  std::vector<float> f(static_cast<size_t>(in), 1.f);
  PackedLinearWeights packed;
  packed.requantize_scaled_panels(*weight, ordered, out, in, f);
  struct Step {
    std::vector<std::pair<int64_t, float>> factors;  // column, new factor
  };
  const std::vector<Step> steps = {
      {{{3, 1.05f}, {100, 1.2f}, {255, 1.01f}}},  // small growth: codes only
      {{{50, 1.5f}}},                             // a few channels' maximum grows: those rows anew
      {{{17, 9.f}}},                              // becomes the maximum of many channels
      {{{17, 9.5f}, {40, 1.3f}}},
      {{{100, 0.5f}}},                            // shrinks: the full path
  };
  for (size_t s = 0; s < steps.size(); ++s) {
    SCOPED_TRACE("step " + std::to_string(s));
    for (const auto& [column, value] : steps[s].factors) f[static_cast<size_t>(column)] = value;
    packed.requantize_scaled_panels(*weight, ordered, out, in, f);
    EXPECT_EQ(product(packed, in), product(PackedLinearWeights::quantize(*weight, scaled_by(w, out, in, f).data(), out, in), in));
  }
}

// One linear layer decoding token by token: the prompt is one window with its own c, each later
// token takes c over every row so far (given as the model gives it). Expected: the folded
// computation of docs/INTEGER_ENGINE.md from that definition, with c computed here:
// y = r_i Σ_j code_ij · Q(W·diag(c^(1−α)))_kj + b, the codes those of CrossQuant with that c.
// Token 3 raises c in a channel (4x its prompt maximum), token 5 in several.
TEST(DynamicCrossQuantDecode, DecodeTokenByTokenEqualsTheFoldedRunningMaximum) {
  const int64_t out = 130, in = 96, prompt = 12, tokens = 8;
  const auto w = test::random_normal(out * in, 37, 0.05f);
  const auto bias = test::random_normal(out, 38, 0.1f);
  auto x = test::random_normal((prompt + tokens) * in, 39, 1.f);
  for (int64_t i = 0; i < prompt + tokens; ++i) x[static_cast<size_t>(i * in + 3)] *= 20.f;  // an outlier channel
  x[static_cast<size_t>((prompt + 3) * in + 10)] = 12.f;
  for (int64_t j = 40; j < 46; ++j) x[static_cast<size_t>((prompt + 5) * in + j)] = -9.f;
  for (const auto& weight : {make("per-channel", 8), make("group", 4)}) {
    SCOPED_TRACE(weight->spec().method);
    IntegerLinearOptions options;
    options.activation = make("crossquant", 8);
    options.weight = weight;
    IntegerLinear backend(options, w, out, in, bias);
    std::vector<float> c(static_cast<size_t>(in), 0.f);
    int64_t grew = 0;
    for (int64_t step = 0; step <= tokens; ++step) {
      const int64_t first = step == 0 ? 0 : prompt + step - 1, rows = step == 0 ? prompt : 1;
      const std::vector<float> before = c;
      for (int64_t i = first; i < first + rows; ++i)
        for (int64_t j = 0; j < in; ++j) c[static_cast<size_t>(j)] = std::max(c[static_cast<size_t>(j)], std::fabs(x[static_cast<size_t>(i * in + j)]));
      if (step > 0 && c != before) ++grew;
      std::vector<float> y(static_cast<size_t>(rows * out));
      KernelStats stats;
      backend.set_column_absmax(c);
      backend.run(x.data() + first * in, RowWindows(rows, rows), y.data(), stats);
      // The reference: CrossQuant with these c (static form: same formula), weights folded.
      const auto with_c = make("crossquant", 8, c);
      std::vector<float> rows_x(x.begin() + first * in, x.begin() + (first + rows) * in);
      const QuantizedMatrix q = with_c->quantize(MatrixView{rows_x.data(), rows, in, in}, nullptr);
      const auto& cross = dynamic_cast<const CrossQuantQuantizer&>(*with_c);
      std::vector<float> w_hat = scaled_by(w, out, in, cross.column_divisors(c));
      weight->fake_quantize(MatrixView{w_hat.data(), out, in, in}, nullptr);
      double max_err = 0, max_abs = 0;
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t k = 0; k < out; ++k) {
          double sum = 0;
          for (int64_t j = 0; j < in; ++j)
            sum += q.codes[static_cast<size_t>(i * in + j)] * static_cast<double>(w_hat[static_cast<size_t>(k * in + j)]);
          const double want = q.row_scales[static_cast<size_t>(i)] * sum + bias[static_cast<size_t>(k)];
          max_abs = std::max(max_abs, std::fabs(want));
          max_err = std::max(max_err, std::fabs(want - y[static_cast<size_t>(i * out + k)]));
        }
      EXPECT_LE(max_err, 1e-5 * max_abs) << "step " << step;
      EXPECT_EQ(stats.clipped, 0);
    }
    EXPECT_GE(grew, 2);  // the test exercises growth mid-sequence
  }
}

// Records the column maxima the model hands to the activation quantizer (fake engine), and the
// rows it quantizes, per site.
class RecordingCrossQuant final : public Quantizer {
 public:
  explicit RecordingCrossQuant(std::shared_ptr<const Quantizer> inner) : inner_(std::move(inner)) {}
  const QuantizerSpec& spec() const override { return inner_->spec(); }
  void fake_quantize(MatrixView x, KernelStats* stats) const override {
    record(x, {});
    inner_->fake_quantize(x, stats);
  }
  QuantizedMatrix quantize(MatrixView x, KernelStats* stats) const override { return inner_->quantize(x, stats); }
  bool wants_column_absmax() const override { return true; }
  void fake_quantize_with_column_absmax(MatrixView x, std::span<const float> c, KernelStats* stats) const override {
    record(x, c);
    inner_->fake_quantize_with_column_absmax(x, c, stats);
  }
  struct Call {
    std::vector<float> rows, c;  // c empty: the quantizer's own
    int64_t cols = 0;
  };
  mutable std::vector<Call> calls;

 private:
  void record(const MatrixView& x, std::span<const float> c) const {
    Call call;
    call.cols = x.cols;
    for (int64_t i = 0; i < x.rows; ++i) call.rows.insert(call.rows.end(), x.row(i), x.row(i) + x.cols);
    call.c.assign(c.begin(), c.end());
    calls.push_back(std::move(call));
  }
  std::shared_ptr<const Quantizer> inner_;
};

// Records what the model hands to an integer-engine backend: c per run and the input rows.
class RecordingBackend final : public LinearBackend {
 public:
  RecordingBackend(int64_t in, int64_t out) : in_(in), out_(out) {}
  void set_column_absmax(std::span<const float> c) override { pending_.assign(c.begin(), c.end()); }
  void run(const float* x, const RowWindows& windows, float* y, KernelStats&) override {
    RecordingCrossQuant::Call call;
    call.cols = in_;
    call.rows.assign(x, x + windows.rows() * in_);
    call.c = pending_;
    calls.push_back(std::move(call));
    // Outputs that follow the input, so that later sites see new maxima too.
    for (int64_t i = 0; i < windows.rows(); ++i)
      for (int64_t k = 0; k < out_; ++k) y[i * out_ + k] = 0.5f * x[i * in_ + (k * 7) % in_];
  }
  std::vector<RecordingCrossQuant::Call> calls;

 private:
  int64_t in_, out_;
  std::vector<float> pending_;
};

// Every call after the prompt must have received c_j = max |x_ij| over the rows this site saw
// so far (prompt and earlier tokens included); the prompt call its own maxima (or none).
void expect_running_maxima(const std::vector<RecordingCrossQuant::Call>& calls, int64_t expected_calls) {
  ASSERT_EQ(static_cast<int64_t>(calls.size()), expected_calls);
  std::vector<float> running;
  int64_t grew = 0;
  for (size_t n = 0; n < calls.size(); ++n) {
    const auto& call = calls[n];
    if (running.empty()) running.assign(static_cast<size_t>(call.cols), 0.f);
    const std::vector<float> before = running;
    for (size_t i = 0; i < call.rows.size(); ++i)
      running[i % running.size()] = std::max(running[i % running.size()], std::fabs(call.rows[i]));
    if (n > 0 && running != before) ++grew;
    if (n == 0 && call.c.empty()) continue;
    EXPECT_EQ(call.c, running) << "call " << n;
  }
  EXPECT_GE(grew, 1) << "c never grew after the prompt: the test does not exercise growth";
}

// The model's side, fake engine: the maxima handed to the quantizer at every site of a decode.
TEST(DynamicCrossQuantDecode, FakeEngineQuantizesDecodedTokensWithTheSequenceMaxima) {
  Transformer model(test::synthetic_model("llama-gqa"));
  std::map<int, std::shared_ptr<RecordingCrossQuant>> sites;
  for (int site = 0; site < kInputSites; ++site) {
    sites[site] = std::make_shared<RecordingCrossQuant>(make("crossquant", 8));
    model.set_activation_quantizer(0, static_cast<InputSite>(site), sites[site]);
  }
  const std::vector<int32_t> prompt = {5, 17, 3, 42, 8, 29};
  const int64_t vocab = model.config().vocab_size, steps = 6;
  KVCache cache = model.make_cache(1, static_cast<int64_t>(prompt.size()) + steps);
  std::vector<float> logits(static_cast<size_t>(vocab));
  model.forward(prompt, 1, static_cast<int64_t>(prompt.size()), logits, &cache, true);
  for (int64_t s = 0; s < steps; ++s) {
    const std::vector<int32_t> token = {static_cast<int32_t>((11 * s + 7) % vocab)};
    model.forward(token, 1, 1, logits, &cache, true);
  }
  for (auto& [site, recorder] : sites) {
    SCOPED_TRACE(input_site_name(static_cast<InputSite>(site)));
    expect_running_maxima(recorder->calls, steps + 1);
  }
}

// The same for the integer engine's backends: they receive the sequence maxima.
TEST(DynamicCrossQuantDecode, IntegerBackendsReceiveTheSequenceMaxima) {
  Transformer model(test::synthetic_model("llama-gqa"));
  const auto quantizer = make("crossquant", 8);
  model.set_activation_quantizer_everywhere(quantizer);
  const Transformer::BlockLinears block = model.block_linears(0);
  std::map<std::string, std::shared_ptr<RecordingBackend>> backends;
  for (const auto& [name, index] : {std::pair<std::string, int64_t>{"q", block.q}, {"k", block.k}, {"o", block.o},
                                    {"gate", block.gate_or_fc1}, {"down", block.down_or_fc2}}) {
    const LinearLayer& linear = model.linear_layers()[static_cast<size_t>(index)];
    backends[name] = std::make_shared<RecordingBackend>(linear.in_features, linear.out_features);
  }
  for (const int64_t index : {block.q, block.k, block.v, block.o, block.gate_or_fc1, block.up, block.down_or_fc2}) {
    const LinearLayer& linear = model.linear_layers()[static_cast<size_t>(index)];
    std::shared_ptr<LinearBackend> backend = std::make_shared<RecordingBackend>(linear.in_features, linear.out_features);
    for (const auto& [name, recorded] : backends)
      if ((name == "q" && index == block.q) || (name == "k" && index == block.k) || (name == "o" && index == block.o) ||
          (name == "gate" && index == block.gate_or_fc1) || (name == "down" && index == block.down_or_fc2))
        backend = recorded;
    model.set_linear_backend(index, backend);
  }
  const std::vector<int32_t> prompt = {9, 4, 33, 12, 7};
  const int64_t vocab = model.config().vocab_size, steps = 5;
  KVCache cache = model.make_cache(1, static_cast<int64_t>(prompt.size()) + steps);
  std::vector<float> logits(static_cast<size_t>(vocab));
  model.forward(prompt, 1, static_cast<int64_t>(prompt.size()), logits, &cache, true);
  for (int64_t s = 0; s < steps; ++s) {
    const std::vector<int32_t> token = {static_cast<int32_t>((13 * s + 2) % vocab)};
    model.forward(token, 1, 1, logits, &cache, true);
  }
  for (auto& [name, recorder] : backends) {
    SCOPED_TRACE(name);
    expect_running_maxima(recorder->calls, steps + 1);
  }
}

}  // namespace
}  // namespace cq
