// `cq eval`'s engine and metrics against the independent PyTorch reference
// (tests/reference/eval_reference.py, float64, one request per forward): the first 100
// documents of every task in $CQ_SHARED/data (MMLU: all 114 test rows) on both shared
// models, and (<model>_bos.json) lambada_openai, arc_easy and hellaswag with BOS prepended
// (--add-bos). Every request's token split and greedy flag match exactly, every
// log-likelihood to 1e-4 absolute, every accuracy exactly (same number of correct documents).
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include <nlohmann/json.hpp>

#include "eval/harness.h"
#include "eval/loglikelihood.h"
#include "eval/task.h"
#include "model/transformer.h"
#include "ptq/apply_quantization.h"
#include "quant/quant_config.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"
#include "util/text_file.h"

namespace cq {
namespace {

namespace fs = std::filesystem;

constexpr double kLoglikelihoodTolerance = 1e-4;

struct GoldenCase {
  std::string model, task;
  bool add_bos = false;  // tests/golden/eval/<model>_bos.json: BOS prepended to every encoding
  std::string golden() const { return model + (add_bos ? "_bos" : ""); }
};

void PrintTo(const GoldenCase& c, std::ostream* os) { *os << c.golden() << "/" << c.task; }

std::string case_name(const testing::TestParamInfo<GoldenCase>& info) {
  return info.param.golden() + "_" + info.param.task;
}

class EvalGolden : public testing::TestWithParam<GoldenCase> {};

void expect_metric(const nlohmann::json& golden, const MetricRow& row, const std::string& where) {
  SCOPED_TRACE(where + " " + row.task + " " + row.metric);
  ASSERT_TRUE(golden.contains(row.metric));
  if (row.metric == "perplexity") {
    EXPECT_NEAR(row.value, golden[row.metric].get<double>(), 1e-4 * golden[row.metric].get<double>());
    return;
  }
  const std::string correct = row.metric == "acc" ? "correct" : "correct_norm";
  EXPECT_EQ(row.correct, golden[correct].get<int64_t>());
  EXPECT_EQ(row.docs, golden["docs"].get<int64_t>());
  EXPECT_DOUBLE_EQ(row.value, golden[row.metric].get<double>());
  const std::string stderr_key = row.metric + "_stderr";
  if (golden.contains(stderr_key) && !golden[stderr_key].is_null()) {
    EXPECT_NEAR(row.stderr_value, golden[stderr_key].get<double>(), 1e-12);
  }
}

TEST_P(EvalGolden, MatchesTheReference) {
  const GoldenCase& param = GetParam();
  CQ_NEED_SHARED("models/" + param.model);
  CQ_NEED_SHARED("data/mmlu/test");
  const fs::path golden_path = test::source_dir() / "tests/golden/eval" / (param.golden() + ".json");
  ASSERT_TRUE(fs::exists(golden_path)) << golden_path << " (run tests/reference/eval_reference.py)";
  const nlohmann::json all = nlohmann::json::parse(read_text_file(golden_path));
  ASSERT_EQ(all["add_bos"].get<bool>(), param.add_bos);
  const nlohmann::json& golden = all["tasks"][param.task];

  const fs::path model_dir = test::shared_dir() / "models" / param.model;
  Transformer model(model_dir);
  const auto tokenizer = load_tokenizer(model_dir);
  LoglikelihoodOptions options;
  options.add_bos = param.add_bos;
  LoglikelihoodEngine engine(model, *tokenizer, options);
  ASSERT_EQ(engine.options().max_length, all["max_length"].get<int64_t>());
  const Task task = load_task(param.task, test::shared_dir() / "data", all["limit"].get<int64_t>());
  const TaskResult result = run_task(engine, task, false);

  std::map<std::pair<int64_t, int64_t>, const nlohmann::json*> requests;
  for (const auto& request : golden["requests"])
    requests[{request["doc"].get<int64_t>(), request["choice"].get<int64_t>()}] = &request;
  size_t compared = 0;
  double worst = 0;
  for (size_t d = 0; d < result.scores.size(); ++d)
    for (size_t i = 0; i < result.scores[d].requests.size(); ++i) {
      const auto it = requests.find({static_cast<int64_t>(d), static_cast<int64_t>(i)});
      ASSERT_NE(it, requests.end()) << "doc " << d << " choice " << i << " missing from the golden file";
      const nlohmann::json& expected = *it->second;
      const RequestScore& score = result.scores[d].requests[i];
      SCOPED_TRACE(fmt::format("doc {} choice {}", d, i));
      EXPECT_EQ(score.context_tokens, expected["context_tokens"].get<int64_t>());
      EXPECT_EQ(score.continuation, expected["continuation"].get<std::vector<int32_t>>());
      EXPECT_NEAR(score.loglikelihood, expected["ll"].get<double>(), kLoglikelihoodTolerance);
      EXPECT_EQ(score.is_greedy, expected["is_greedy"].get<bool>());
      worst = std::max(worst, std::abs(score.loglikelihood - expected["ll"].get<double>()));
      ++compared;
    }
  EXPECT_EQ(compared, golden["requests"].size());
  RecordProperty("max_abs_ll_error", fmt::format("{:.3g}", worst));

  const nlohmann::json& metrics = golden["metrics"];
  for (const MetricRow& row : result.metrics) {
    if (row.task == param.task) {
      expect_metric(metrics, row, "task");
    } else if (row.task.rfind("mmlu_", 0) == 0) {
      const std::string name = row.task.substr(5);
      const nlohmann::json& group = metrics["subjects"].contains(name) ? metrics["subjects"][name] : metrics["categories"][name];
      expect_metric(group, row, "group");
    }
  }
}

std::vector<GoldenCase> golden_cases() {
  std::vector<GoldenCase> cases;
  for (const char* model : {"stories260k", "tinyopt"}) {
    for (const char* task : {"lambada_openai", "arc_easy", "piqa", "hellaswag", "boolq", "mmlu"})
      cases.push_back({model, task, false});
    // --add-bos (eval_reference.py --add-bos --tasks lambada_openai,arc_easy,hellaswag)
    for (const char* task : {"lambada_openai", "arc_easy", "hellaswag"}) cases.push_back({model, task, true});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(SharedModels, EvalGolden, testing::ValuesIn(golden_cases()), case_name);

// Every request's log-likelihood within `tolerance` and (at 1e-4) the same greedy flag.
void expect_same_scores(const TaskResult& got, const TaskResult& want, double tolerance = 1e-4) {
  ASSERT_EQ(got.scores.size(), want.scores.size());
  for (size_t d = 0; d < got.scores.size(); ++d)
    for (size_t i = 0; i < got.scores[d].requests.size(); ++i) {
      SCOPED_TRACE(fmt::format("doc {} choice {}", d, i));
      const RequestScore &a = got.scores[d].requests[i], &b = want.scores[d].requests[i];
      EXPECT_NEAR(a.loglikelihood, b.loglikelihood, tolerance);
      if (tolerance <= 1e-4) {
        EXPECT_EQ(a.is_greedy, b.is_greedy);
      }
    }
  EXPECT_EQ(got.stats.request_tokens, want.stats.request_tokens);
}

TaskResult run_per_request(Transformer& model, const Tokenizer& tokenizer, const Task& task) {
  LoglikelihoodOptions options;
  options.mode = ScoringMode::PerRequest;
  LoglikelihoodEngine engine(model, tokenizer, options);
  return run_task(engine, task, false);
}

// Packed scoring (questions packed into few forwards, each context run once as a tree) gives
// the numbers of one full forward per request, with and without context sharing, and with
// a budget small enough that every question runs alone.
TEST(EvalEngine, PackedEqualsOneForwardPerRequest) {
  CQ_NEED_SHARED("models/tinyopt");
  CQ_NEED_SHARED("data/hellaswag");
  for (const char* name : {"tinyopt", "stories260k"}) {
    SCOPED_TRACE(name);
    const fs::path model_dir = test::shared_dir() / "models" / name;
    Transformer model(model_dir);
    const auto tokenizer = load_tokenizer(model_dir);
    const Task task = load_task("hellaswag", test::shared_dir() / "data", 10);
    const TaskResult want = run_per_request(model, *tokenizer, task);
    EXPECT_EQ(want.stats.forward_calls, 40);
    for (const int64_t budget : {int64_t{2048}, int64_t{1}})
      for (const bool share_context : {true, false}) {
        SCOPED_TRACE(fmt::format("packed_tokens {} share_context {}", budget, share_context));
        LoglikelihoodOptions options;
        options.packed_tokens = budget;
        options.share_context = share_context;
        LoglikelihoodEngine packed(model, *tokenizer, options);
        const TaskResult got = run_task(packed, task, false);
        expect_same_scores(got, want);
        if (budget == 1) {
          EXPECT_EQ(got.stats.forward_calls, 10);  // a question larger than the budget runs alone
        } else {
          EXPECT_LT(got.stats.forward_calls, 5);
          EXPECT_LE(got.stats.positions, budget * got.stats.forward_calls);
        }
        // Sharing runs each context once: the positions of the contexts plus the continuations
        // without their last token, against one full sequence per request.
        if (share_context) EXPECT_LT(got.stats.positions, want.stats.positions * 3 / 4);
        else EXPECT_EQ(got.stats.positions, want.stats.positions);
      }
  }
}

// Quantized models. Dynamic CrossQuant's column maxima span a window, so `cq eval` packs each
// request as a tree of its own there (share_context = false): exactly the per-request
// numbers. Per-token activations are quantized row by row, so a shared context gives the
// per-request numbers up to float rounding: the context's attention sums run over fewer
// masked keys, and an activation at a rounding boundary can move one 8-bit code (on 50
// documents, 1-2 of 200 requests moved by 0.007-0.013 nats); the accuracies stay the same.
// Fake-quant and integer engine.
TEST(EvalEngine, QuantizedPackedEqualsOneForwardPerRequest) {
  CQ_NEED_SHARED("models/tinyopt");
  CQ_NEED_SHARED("data/hellaswag");
  const fs::path model_dir = test::shared_dir() / "models" / "tinyopt";
  const auto tokenizer = load_tokenizer(model_dir);
  const Task task = load_task("hellaswag", test::shared_dir() / "data", 20);
  for (const char* activation : {"per-token", "crossquant"})
    for (const char* engine : {"fake", "int"}) {
      SCOPED_TRACE(fmt::format("{} {}", activation, engine));
      QuantConfig config;
      config.apply_scheme("w8a8");
      config.activation_method = activation;
      config.engine = engine;
      Transformer model(model_dir);
      apply_quantization(model, config);
      LoglikelihoodOptions options;
      options.share_context = config.activation_method == "per-token";
      LoglikelihoodEngine packed(model, *tokenizer, options);
      const TaskResult got = run_task(packed, task, false), want = run_per_request(model, *tokenizer, task);
      expect_same_scores(got, want, options.share_context ? 0.05 : 1e-4);
      for (size_t m = 0; m < got.metrics.size(); ++m) EXPECT_EQ(got.metrics[m].correct, want.metrics[m].correct);
    }
}

TEST(EvalEngine, LongRequestsAreLeftTruncated) {
  CQ_NEED_SHARED("models/tinyopt");
  const fs::path model_dir = test::shared_dir() / "models" / "tinyopt";
  Transformer model(model_dir);
  const auto tokenizer = load_tokenizer(model_dir);
  LoglikelihoodOptions options;
  options.max_length = 16;
  LoglikelihoodEngine engine(model, *tokenizer, options);
  EncodedRequest request;
  for (int32_t t = 0; t < 40; ++t) request.context.push_back(3 + t);
  request.continuation = {7, 8};
  const EncodedRequest requests[] = {request};
  const RequestScore score = engine.score_encoded(requests)[0];
  // Same as scoring the last 17 tokens' worth: inp = all[-17:][:-1].
  EncodedRequest tail;
  tail.context.assign(request.context.end() - 15, request.context.end());
  tail.continuation = request.continuation;
  const EncodedRequest tails[] = {tail};
  EXPECT_NEAR(score.loglikelihood, engine.score_encoded(tails)[0].loglikelihood, 1e-6);
  EXPECT_EQ(engine.stats().positions, 32);
}

}  // namespace
}  // namespace cq
