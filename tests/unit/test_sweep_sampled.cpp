// `cq sweep --sample-windows`: evaluation and calibration tokens sampled from the FP32 model
// itself (eval/model_samples.h), for models without a tokenizer such as the outlier demo model.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "eval/agreement.h"  // run_logits, perplexity_of_logits
#include "eval/model_samples.h"
#include "model/transformer.h"
#include "ptq/apply_quantization.h"
#include "quant/quant_config.h"
#include "test_support.h"
#include "util/text_file.h"

namespace cq {
namespace {

std::string outlier_model() { return test::synthetic_model("opt-outliers").string(); }

// Per position t of every window (t = 1 .. seqlen - 1): log p(x_t | x_<t) from the logits at
// t - 1, and the entropy of that distribution, in double, from the definition.
struct Scored {
  std::vector<double> log_prob, entropy;
};
Scored score(const std::vector<float>& logits, const std::vector<int32_t>& tokens, int64_t windows, int64_t seqlen,
             int64_t vocab) {
  Scored scored;
  for (int64_t w = 0; w < windows; ++w)
    for (int64_t t = 1; t < seqlen; ++t) {
      const float* row = logits.data() + (w * seqlen + t - 1) * vocab;
      double max = row[0];
      for (int64_t j = 1; j < vocab; ++j) max = std::max<double>(max, row[j]);
      double sum = 0;
      for (int64_t j = 0; j < vocab; ++j) sum += std::exp(row[j] - max);
      const double log_norm = max + std::log(sum);
      double entropy = 0;
      for (int64_t j = 0; j < vocab; ++j) entropy -= std::exp(row[j] - log_norm) * (row[j] - log_norm);
      scored.log_prob.push_back(row[tokens[static_cast<size_t>(w * seqlen + t)]] - log_norm);
      scored.entropy.push_back(entropy);
    }
  return scored;
}

// Mean and standard error of a list of values.
std::pair<double, double> mean_and_error(const std::vector<double>& values) {
  double mean = 0, square = 0;
  for (double v : values) mean += v;
  mean /= static_cast<double>(values.size());
  for (double v : values) square += (v - mean) * (v - mean);
  return {mean, std::sqrt(square / static_cast<double>(values.size() - 1) / static_cast<double>(values.size()))};
}

TEST(SampledTokens, DeterministicForASeedDifferentForAnother) {
  Transformer model(outlier_model());
  const auto a = sample_token_windows(model, 2, 32, 5, SampleStream::Evaluation);
  ASSERT_EQ(a.size(), 64u);
  for (int32_t token : a) {
    EXPECT_GE(token, 0);
    EXPECT_LT(token, model.config().vocab_size);
  }
  EXPECT_EQ(sample_token_windows(model, 2, 32, 5, SampleStream::Evaluation), a);
  EXPECT_NE(sample_token_windows(model, 2, 32, 6, SampleStream::Evaluation), a);
  EXPECT_NE(sample_token_windows(model, 2, 32, 5, SampleStream::Calibration), a);
  // A window depends on its seed and index only: more windows extend the stream (what lets the
  // ranks of an MPI job sample their own windows).
  const auto three = sample_token_windows(model, 3, 32, 5, SampleStream::Evaluation);
  EXPECT_EQ(std::vector<int32_t>(three.begin(), three.begin() + 64), a);
  // Windows are independent samples, not copies.
  EXPECT_NE(std::vector<int32_t>(a.begin(), a.begin() + 32), std::vector<int32_t>(a.begin() + 32, a.end()));
}

// Sampled at temperature 1 from the model's own next-token distribution: then log p(x_t) has
// expectation -H_t at every position, so mean(-log p - H) is zero within its standard error.
// (Argmax, another temperature or a shifted distribution would move it by many errors.)
TEST(SampledTokens, FollowTheModelsOwnDistribution) {
  Transformer model(outlier_model());
  const int64_t windows = 4, seqlen = 128, vocab = model.config().vocab_size;
  const auto tokens = sample_token_windows(model, windows, seqlen, 11, SampleStream::Evaluation);
  const Scored scored = score(run_logits(model, tokens, windows, seqlen), tokens, windows, seqlen, vocab);
  std::vector<double> surprise_minus_entropy;
  for (size_t i = 0; i < scored.log_prob.size(); ++i) surprise_minus_entropy.push_back(-scored.log_prob[i] - scored.entropy[i]);
  const auto [mean, error] = mean_and_error(surprise_minus_entropy);
  EXPECT_LT(std::abs(mean), 4 * error) << "mean -log p - H = " << mean << " nats, standard error " << error;
  EXPECT_GT(error, 0);
}

// The outlier model's rotation grid from one command: FP32 scores its own samples best, and a
// quantized row's log-perplexity gap is the mean log p/q over the documented sampled stream,
// computed here from both models' logits (an estimate of KL(FP32 || quantized): it is that in
// expectation, by FollowTheModelsOwnDistribution).
TEST(SampledTokens, SweepOnTheOutlierModelMeasuresTheDamage) {
  const auto dir = test::scratch_dir("sweep-sampled");
  const int64_t windows = 3, seqlen = 96;
  const auto result = test::run_cq("sweep --model '" + outlier_model() + "' --sample-windows 3 --sample-seed 9 --seqlen 96 "
                                   "--grid 'scheme=w4a4;rotate=none,hadamard;act=per-token' --quiet --json '" +
                                   (dir / "s.json").string() + "'");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto json = nlohmann::json::parse(read_text_file((dir / "s.json").string()));
  ASSERT_EQ(json["rows"].size(), 3u);
  EXPECT_EQ(json["sample_windows"], 3);
  EXPECT_EQ(json["tokens"], windows * seqlen);
  EXPECT_TRUE(json["text"].is_null());
  const auto& rows = json["rows"];
  EXPECT_EQ(rows[0]["setting"], "FP32");
  EXPECT_EQ(rows[2]["rotation"], "hadamard");
  for (size_t i = 1; i < 3; ++i) {
    EXPECT_EQ(rows[i]["windows"], windows);
    EXPECT_GT(rows[i]["perplexity"].get<double>(), rows[0]["perplexity"].get<double>()) << rows[i];
  }

  // The same tokens in process (the documented stream), FP32 and the rotated W4A4 row's logits.
  Transformer reference(outlier_model());
  const int64_t vocab = reference.config().vocab_size;
  const auto tokens = sample_token_windows(reference, windows, seqlen, 9, SampleStream::Evaluation);
  const auto reference_logits = run_logits(reference, tokens, windows, seqlen);
  EXPECT_NEAR(std::log(perplexity_of_logits(reference_logits, tokens, windows, seqlen, vocab)),
              std::log(rows[0]["perplexity"].get<double>()), 1e-9);
  Transformer quantized(outlier_model());
  QuantConfig config;
  config.apply_scheme("w4a4");
  config.method = "rtn";
  config.activation_method = "per-token";
  config.rotation = "hadamard";
  apply_quantization(quantized, config);
  const auto quantized_logits = run_logits(quantized, tokens, windows, seqlen);
  const Scored p = score(reference_logits, tokens, windows, seqlen, vocab);
  const Scored q = score(quantized_logits, tokens, windows, seqlen, vocab);
  double gap = 0;
  for (size_t i = 0; i < p.log_prob.size(); ++i) gap += p.log_prob[i] - q.log_prob[i];
  gap /= static_cast<double>(p.log_prob.size());
  EXPECT_NEAR(gap, std::log(rows[2]["perplexity"].get<double>() / rows[0]["perplexity"].get<double>()), 1e-6);
}

TEST(SampledTokens, GptqCalibratesOnSampledWindows) {
  const auto dir = test::scratch_dir("sweep-sampled-gptq");
  const auto result = test::run_cq("sweep --model '" + outlier_model() + "' --sample-windows 1 --seqlen 64 "
                                   "--grid 'scheme=w4a8;method=rtn,gptq;act=crossquant' --calib-samples 2 --calib-seqlen 64 "
                                   "--quiet --json '" + (dir / "s.json").string() + "'");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto json = nlohmann::json::parse(read_text_file((dir / "s.json").string()));
  EXPECT_EQ(json["calibration_tokens"], 128);
  ASSERT_EQ(json["rows"].size(), 3u);
  EXPECT_EQ(json["rows"][2]["quant_method"], "gptq");
  EXPECT_NE(json["rows"][2]["perplexity"], json["rows"][1]["perplexity"]);  // GPTQ changed the weights
}

void expect_clean_failure(const std::string& arguments, const std::string& message) {
  const auto result = test::run_cq(arguments);
  EXPECT_NE(result.exit_code, 0) << arguments << "\n" << result.output;  // 1, or CLI11's code for a bad value
  EXPECT_NE(result.output.find(message), std::string::npos) << arguments << "\n" << result.output;
  EXPECT_EQ(result.output.find("terminate"), std::string::npos) << result.output;
}

TEST(SampledTokens, BadFlagsAreClearErrors) {
  const std::string sweep = "sweep --model '" + outlier_model() + "' --grid 'scheme=w8a8;act=per-token' ";
  expect_clean_failure(sweep, "give --text FILE, or --sample-windows N");
  expect_clean_failure(sweep + "--text /dev/null --sample-windows 2", "--text and --sample-windows are two token sources");
  expect_clean_failure(sweep + "--text /dev/null --sample-seed 3", "--sample-seed has no effect without --sample-windows");
  expect_clean_failure(sweep + "--sample-windows 2 --max-windows 1", "--max-windows has no effect with --sample-windows");
  expect_clean_failure(sweep + "--sample-windows 2 --calib /dev/null", "--calib has no effect with --sample-windows");
  expect_clean_failure(sweep + "--sample-windows 0", "--sample-windows");
  expect_clean_failure(sweep + "--sample-windows 2 --sample-seed -1", "--sample-seed");
  expect_clean_failure(sweep + "--sample-windows 2 --seqlen 1", "--seqlen 1 with --sample-windows");
  expect_clean_failure(sweep + "--sample-windows 1 --seqlen 600", "--seqlen 600");
  // Calibration flags act only where a cell calibrates.
  expect_clean_failure(sweep + "--sample-windows 1 --seqlen 16 --calib-samples 2", "--calib-samples");
  expect_clean_failure("sweep --model '" + outlier_model() + "' --grid 'scheme=w4a8;method=gptq' --sample-windows 1 --seqlen 16 "
                       "--calib-seqlen 600", "--calib-seqlen 600");
}

}  // namespace
}  // namespace cq
