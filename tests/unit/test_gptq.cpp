// GPTQ (quant/gptq.h, ptq/gptq.h): hand-checkable cases of the solver, and the whole-model
// driver against the float64 plain-PyTorch reference tests/reference/gptq_reference.py on
// both shared models (codes of the first rows of every linear, code sums of every linear,
// perplexities). On this machine every code equals the reference's (0 of 226,560 differ on
// stories260k in all four settings); the tolerance (0.2 % of the codes, code sums within
// 0.2 % of Σ|code|) leaves room for rounding ties that float32 products on another CPU path
// may flip, which then move the rest of their row.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>
#include <nlohmann/json.hpp>

#include "eval/perplexity.h"
#include "model/transformer.h"
#include "ptq/apply_quantization.h"
#include "quant/gptq.h"
#include "quant/quant_config.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/text_file.h"

namespace cq {
namespace {

QuantizerSpec per_channel(int bits) {
  QuantizerSpec spec;
  spec.method = "per-channel";
  spec.bits = bits;
  return spec;
}

TEST(GptqSolver, WithoutCorrelationsItIsRoundToNearest) {
  // H diagonal: U is diagonal, no error reaches another column, GPTQ = RTN.
  const int64_t rows = 5, cols = 37;
  const auto w = test::random_normal(rows * cols, 7, 1.f);
  std::vector<double> h(static_cast<size_t>(cols * cols), 0.0);
  for (int64_t j = 0; j < cols; ++j) h[static_cast<size_t>(j * cols + j)] = 1.0 + static_cast<double>(j);
  GptqOptions options;
  options.block_size = 8;
  const GptqResult result = gptq_quantize(w, rows, cols, h, per_channel(4), options);
  std::vector<float> copy = w;
  const QuantizedMatrix rtn = make_quantizer(per_channel(4))->quantize(MatrixView{copy.data(), rows, cols, cols}, nullptr);
  EXPECT_EQ(result.quantized.codes, rtn.codes);
  EXPECT_EQ(result.quantized.row_scales, rtn.row_scales);
}

TEST(GptqSolver, ErrorFeedbackByHand) {
  // 3-bit per-channel (qmax 3), w = [0.25, 0.29, 0.6]: Δ = 0.2. H = [[1, c, 0], [c, 1, 0], [0, 0, 1]]
  // + λI, λ = 0.01 · mean diag = 0.01. Column 0: 1.25 → code 1, w0 − q0 = 0.05. The update
  // w1 −= e0 · U01 with e0 = (w0 − q0) / U00 is w1 += 0.05 · (−[H⁻¹]01 / [H⁻¹]00) = 0.05 · c / 1.01:
  // c = 0.5: w1 = 0.31475 → round(1.574) = 2; c = −0.5: 0.26525 → 1; no update (RTN): round(1.45) = 1.
  const std::vector<float> w = {0.25f, 0.29f, 0.6f};
  auto solve = [&](double c, int64_t block_size) {
    const std::vector<double> h = {1, c, 0, c, 1, 0, 0, 0, 1};
    GptqOptions options;
    options.block_size = block_size;
    return gptq_quantize(w, 1, 3, h, per_channel(3), options).quantized.codes;
  };
  for (int64_t block_size : {1, 2, 128}) {  // the update inside a block, and across blocks (GEMM)
    EXPECT_EQ(solve(0.5, block_size), (std::vector<int16_t>{1, 2, 3})) << "block size " << block_size;
    EXPECT_EQ(solve(-0.5, block_size), (std::vector<int16_t>{1, 1, 3})) << "block size " << block_size;
  }
}

TEST(GptqSolver, LazyBlocksComputeTheSameAsImmediateUpdates) {
  // Correlated random H = XᵀX: one column at a time (every update through the GEMM), blocks
  // of 7 and one block give the same codes.
  const int64_t rows = 9, cols = 40, samples = 64;
  const auto x = test::random_normal(samples * cols, 11, 1.f);
  std::vector<float> mixed(x.size());
  for (int64_t t = 0; t < samples; ++t)  // neighbouring channels correlated
    for (int64_t j = 0; j < cols; ++j)
      mixed[static_cast<size_t>(t * cols + j)] = x[static_cast<size_t>(t * cols + j)] + (j > 0 ? 0.8f * x[static_cast<size_t>(t * cols + j - 1)] : 0.f);
  HessianAccumulator accumulator(cols);
  accumulator.add(mixed.data(), samples);
  const auto w = test::random_normal(rows * cols, 12, 0.5f);
  for (const char* method : {"per-channel", "group"}) {
    QuantizerSpec spec = per_channel(4);
    spec.method = method;
    spec.group_size = 16;
    std::vector<std::vector<int16_t>> codes;
    for (int64_t block_size : {1, 7, 128}) {
      GptqOptions options;
      options.block_size = block_size;
      codes.push_back(gptq_quantize(w, rows, cols, accumulator.hessian(), spec, options).quantized.codes);
    }
    EXPECT_EQ(codes[0], codes[2]) << method;
    EXPECT_EQ(codes[1], codes[2]) << method;
  }
}

TEST(GptqSolver, DeadColumnsAreZero) {
  const int64_t rows = 3, cols = 4;
  const auto w = test::random_normal(rows * cols, 3, 1.f);
  std::vector<double> h(16, 0.0);
  for (int j : {0, 1, 3}) h[static_cast<size_t>(j * 4 + j)] = 2.0;
  h[1] = h[4] = 0.5;
  const GptqResult result = gptq_quantize(w, rows, cols, h, per_channel(4), GptqOptions{});
  EXPECT_EQ(result.dead_columns, 1);
  for (int64_t i = 0; i < rows; ++i) EXPECT_EQ(result.quantized.codes[static_cast<size_t>(i * cols + 2)], 0) << "row " << i;
}

TEST(GptqSolver, RefusesWhatItCannotDo) {
  const std::vector<float> w = {1, 2, 3, 4};
  const std::vector<double> h = {1, 0, 0, 1};
  QuantizerSpec cross;
  cross.method = "crossquant";
  EXPECT_NE(test::error_of([&] { gptq_quantize(w, 2, 2, h, cross, GptqOptions{}); }).find("per-channel or group"), std::string::npos);
  EXPECT_NE(test::error_of([&] { gptq_quantize(w, 2, 2, {1, 0, 0}, per_channel(4), GptqOptions{}); }).find("Hessian"), std::string::npos);
  const std::vector<float> bad = {1, NAN, 3, 4};
  EXPECT_NE(test::error_of([&] { gptq_quantize(bad, 2, 2, h, per_channel(4), GptqOptions{}); }).find("non-finite"), std::string::npos);
  GptqOptions zero_damp;
  zero_damp.dampening = 0;
  EXPECT_NE(test::error_of([&] { gptq_quantize(w, 2, 2, h, per_channel(4), zero_damp); }).find("dampening"), std::string::npos);
}

TEST(GptqSolver, HessianIsTwiceTheMeanOuterProduct) {
  const std::vector<float> x = {1, 2, 3, 4, 5, 6};  // 3 rows x 2 columns
  HessianAccumulator accumulator(2);
  accumulator.add(x.data(), 2);
  accumulator.add(x.data() + 4, 1);
  const auto h = accumulator.hessian();
  // Σ x xᵀ = [[1+9+25, 2+12+30], [., 4+16+36]] = [[35, 44], [44, 56]]; · 2/3.
  EXPECT_DOUBLE_EQ(h[0], 70.0 / 3);
  EXPECT_DOUBLE_EQ(h[1], 88.0 / 3);
  EXPECT_DOUBLE_EQ(h[3], 112.0 / 3);
}

// ----------------------------------------------------------------------------- reference

class GptqShared : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(test::shared_dir() / "models" / GetParam())) {
      if (test::shared_required()) FAIL() << "missing shared model " << GetParam();
      GTEST_SKIP() << "shared model " << GetParam() << " not found (set CQ_SHARED)";
    }
    model_dir_ = test::shared_dir() / "models" / GetParam();
    golden_ = nlohmann::json::parse(read_text_file(test::source_dir() / "tests/golden/gptq" / (GetParam() + ".json")));
    const auto tokenizer = load_tokenizer(model_dir_);
    calib_ = tokenizer->encode(read_text_file(test::shared_dir() / golden_["calibration"]["text"].get<std::string>()), true);
    eval_ = tokenizer->encode(read_text_file(test::shared_dir() / golden_["eval"]["text"].get<std::string>()), true);
  }

  // Quantizes with the golden setting `name` and compares codes; returns the model.
  void check_setting(const std::string& name, bool with_activations) {
    const auto& setting = golden_["settings"][name];
    QuantConfig config;
    config.method = "gptq";
    config.weight_bits = setting["bits"].get<int>();
    if (!setting["group_size"].is_null()) {
      config.weight_method = "group";
      config.group_size = setting["group_size"].get<int64_t>();
      config.weight_asymmetric = setting["asymmetric"].get<bool>();
    }
    config.gptq_act_order = setting["act_order"].get<bool>();
    config.gptq_dampening = setting["dampening"].get<double>();
    config.calib_samples = golden_["calibration"]["samples"].get<int64_t>();
    config.calib_seqlen = golden_["calibration"]["seqlen"].get<int64_t>();
    Transformer model(model_dir_);
    const QuantizationRecord record = apply_quantization(model, config, calib_);
    const auto golden_rows = golden_["golden_rows"].get<int64_t>();
    int64_t compared = 0, differing = 0;
    const auto& linears = model.linear_layers();
    ASSERT_EQ(linears.size(), setting["linears"].size());
    for (size_t index = 0; index < linears.size(); ++index) {
      const auto& expected = setting["linears"].at(linears[index].name);
      const QuantizedMatrix q = gptq_codes(model, record.gptq, index);
      int64_t code_sum = 0, abs_sum = 0;
      for (int16_t c : q.codes) code_sum += c, abs_sum += std::abs(c);
      EXPECT_NEAR(static_cast<double>(code_sum), expected["code_sum"].get<double>(), 2e-3 * static_cast<double>(abs_sum) + 1)
          << name << " " << linears[index].name;
      for (int64_t i = 0; i < golden_rows; ++i) {
        std::vector<int> row;
        std::istringstream codes(expected["first_rows"][static_cast<size_t>(i)].get<std::string>());
        for (int code; codes >> code;) row.push_back(code);
        ASSERT_EQ(static_cast<int64_t>(row.size()), q.cols);
        for (int64_t j = 0; j < q.cols; ++j) differing += q.codes[static_cast<size_t>(i * q.cols + j)] != row[static_cast<size_t>(j)];
        compared += q.cols;
      }
    }
    EXPECT_LE(static_cast<double>(differing), 2e-3 * static_cast<double>(compared))
        << name << ": " << differing << " of " << compared << " codes differ from the reference";
    PerplexityOptions options;
    options.seqlen = golden_["eval"]["seqlen"].get<int64_t>();
    options.batch = 8;
    options.show_progress = false;
    const double a16 = setting["ppl"]["a16"].get<double>();
    EXPECT_NEAR(evaluate_perplexity(model, eval_, options).perplexity, a16, 1e-3 * a16) << name << " W-only";
    if (!with_activations) return;
    for (const auto& [label, method] : {std::pair{"a8_per_token", "per-token"}}) {  // CrossQuant: cq sweep, docs/RESULTS.md
      QuantConfig activations;
      activations.activation_bits = 8;
      activations.activation_method = method;
      install_activation_quantizers(model, activations, {});
      const double expected = setting["ppl"][label].get<double>();
      EXPECT_NEAR(evaluate_perplexity(model, eval_, options).perplexity, expected, 1e-3 * expected) << name << " " << label;
    }
  }

  std::filesystem::path model_dir_;
  nlohmann::json golden_;
  std::vector<int32_t> calib_, eval_;
};

TEST_P(GptqShared, PerChannelMatchesTheReference) { check_setting("w4_per_channel", true); }
TEST_P(GptqShared, AsymmetricGroupsMatchTheReference) { check_setting("w4_g32_asym", false); }
TEST_P(GptqShared, ActOrderAndDampeningMatchTheReference) { check_setting("w3_per_channel_act_order_damp0.05", false); }
TEST_P(GptqShared, ActOrderWithGroupsMatchesTheReference) { check_setting("w4_g32_act_order", false); }

INSTANTIATE_TEST_SUITE_P(Models, GptqShared, testing::Values("stories260k", "tinyopt"));

}  // namespace
}  // namespace cq

namespace cq {
namespace {

// cq quantize --method gptq stores GPTQ's own codes: the checkpoint computes what the
// on-the-fly run computes, on the fake engine and on the integer engine (which packs the
// same codes in both cases).
TEST(GptqCli, CheckpointKeepsTheCodes) {
  const auto model = test::shared_dir() / "models" / "stories260k";
  if (!std::filesystem::exists(model)) {
    if (test::shared_required()) FAIL() << "missing shared model stories260k";
    GTEST_SKIP() << "shared model stories260k not found (set CQ_SHARED)";
  }
  const std::string calib = "--calib '" + (test::shared_dir() / "data/wikitext2/wikitext2_test_joined.prefix.txt").string() +
                            "' --calib-samples 4 --calib-seqlen 64";
  const std::string text = " --text '" + (test::shared_dir() / "data/tinystories/TinyStories-valid.first100.txt").string() +
                           "' --seqlen 64 --max-windows 4 --quiet";
  const auto out = test::scratch_dir("gptq_checkpoint") / "m";
  const std::string flags = " --method gptq --scheme w4a8 --weight-quant group --group-size 32 --act-order ";
  const auto quantized = test::run_cq("quantize --quiet --model '" + model.string() + "'" + flags + calib + " --out '" + out.string() + "'");
  ASSERT_EQ(quantized.exit_code, 0) << quantized.output;
  auto perplexity_line = [](const std::string& output) {
    const size_t start = output.find("perplexity:");
    return start == std::string::npos ? output : output.substr(start, output.find('\n', start) - start);
  };
  for (const char* engine : {"fake", "int"}) {
    const auto live = test::run_cq("ppl --model '" + model.string() + "'" + flags + calib + text + " --engine " + engine);
    const auto stored = test::run_cq("ppl --model '" + out.string() + "'" + text + " --engine " + engine);
    ASSERT_EQ(live.exit_code, 0) << live.output;
    ASSERT_EQ(stored.exit_code, 0) << stored.output;
    EXPECT_EQ(perplexity_line(live.output), perplexity_line(stored.output)) << engine;
  }
}

}  // namespace
}  // namespace cq
