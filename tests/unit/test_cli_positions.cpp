// Issue 18.1: sequences past max_position_embeddings. Learned positions (OPT) are refused;
// rotary ones (LLaMA) run with exactly one warning line per run, naming the model, the
// limit and the length asked for, whatever the number of windows or configurations.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "eval/loglikelihood.h"
#include "model/transformer.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"

namespace cq {
namespace {

// A shell-quoted path under the shared assets (appended, not `"'" + ... + "'"`: GCC 12's -Wrestrict false positive).
std::string shared(const std::string& relative) {
  std::string quoted = "'";
  quoted += (test::shared_dir() / relative).string();
  quoted += "'";
  return quoted;
}

int count_of(const std::string& text, const std::string& needle) {
  int count = 0;
  for (std::size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++count;
  return count;
}

void expect_one_warning(const test::CommandResult& result, const std::string& requested) {
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(count_of(result.output, "cq: warning:"), 1) << result.output;
  const std::size_t at = result.output.find("cq: warning:");
  ASSERT_NE(at, std::string::npos) << result.output;
  const std::string line = result.output.substr(at, result.output.find('\n', at) - at);
  EXPECT_NE(line.find("stories260k"), std::string::npos) << line;
  EXPECT_NE(line.find("max_position_embeddings 512"), std::string::npos) << line;
  EXPECT_NE(line.find(requested), std::string::npos) << line;
}

TEST(CliPositions, RotaryPastTheLimitWarnsOncePerRun) {
  CQ_NEED_SHARED("models/stories260k");
  CQ_NEED_SHARED("data/tinystories/TinyStories-valid.first100.txt");
  const std::string model = " --model " + shared("models/stories260k");
  const std::string text = " --text " + shared("data/tinystories/TinyStories-valid.first100.txt");
  // Three windows past the limit: one line, not one per window.
  expect_one_warning(test::run_cq("ppl" + model + text + " --seqlen 600 --max-windows 3"), "--seqlen 600 (600 positions)");
  // Two α, two models: still one line.
  expect_one_warning(test::run_cq("kernel" + model + text + " --seqlen 600 --max-windows 1 --alphas 0.15,0.5"),
                     "--seqlen 600");
  expect_one_warning(test::run_cq("sweep" + model + text + " --seqlen 600 --max-windows 1 --grid 'scheme=w8a8;act=per-token'"),
                     "--seqlen 600");
  expect_one_warning(test::run_cq("generate" + model + " --prompt 'Once upon a time' -n 520"), "--tokens 520");
  expect_one_warning(test::run_cq("bench" + model + " --prompt-tokens 600 --gen-tokens 2 --repeats 1"),
                     "--prompt-tokens 600 + --gen-tokens 2 (602 positions)");
}

TEST(CliPositions, RotaryWithinTheLimitSaysNothing) {
  CQ_NEED_SHARED("models/stories260k");
  const auto result = test::run_cq("ppl --model " + shared("models/stories260k") + " --text " +
                                   shared("data/tinystories/TinyStories-valid.first100.txt") + " --seqlen 512 --max-windows 2");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(result.output.find("warning"), std::string::npos) << result.output;
}

TEST(CliPositions, LearnedPastTheLimitIsRefusedBeforeAnyWork) {
  CQ_NEED_SHARED("models/tinyopt");
  const std::string model = " --model " + shared("models/tinyopt");
  const std::string text = " --text " + shared("data/tinystories/TinyStories-valid.first100.txt");
  for (const std::string& command : {"ppl" + model + text + " --seqlen 600", "generate" + model + " --prompt 'Once upon' -n 600",
                                     "bench" + model + " --prompt-tokens 500 --gen-tokens 20 --repeats 1",
                                     "kernel" + model + text + " --seqlen 513"}) {
    const auto result = test::run_cq(command);
    EXPECT_EQ(result.exit_code, 1) << command << "\n" << result.output;
    EXPECT_NE(result.output.find("cq: error: "), std::string::npos) << result.output;
    EXPECT_NE(result.output.find("exceeds max_position_embeddings 512"), std::string::npos) << result.output;
    EXPECT_EQ(std::count(result.output.begin(), result.output.end(), '\n'), 1) << command << "\n" << result.output;
  }
}

// cq eval: a --max-length past the limit was silently cut to the limit.
TEST(CliPositions, EvalMaxLengthPastTheLimit) {
  CQ_NEED_SHARED("models/tinyopt");
  Transformer opt(test::shared_dir() / "models/tinyopt");
  const auto opt_tokenizer = load_tokenizer(test::shared_dir() / "models/tinyopt");
  LoglikelihoodOptions options;
  options.max_length = 1024;
  EXPECT_NE(test::error_of([&] { LoglikelihoodEngine engine(opt, *opt_tokenizer, options); })
                .find("max_length 1024 (1024 positions) exceeds max_position_embeddings 512"),
            std::string::npos);
  Transformer llama(test::shared_dir() / "models/stories260k");
  const auto llama_tokenizer = load_tokenizer(test::shared_dir() / "models/stories260k");
  const LoglikelihoodEngine engine(llama, *llama_tokenizer, options);
  EXPECT_EQ(engine.options().max_length, 1024);  // rotary: honoured, as lm-eval's max_length
}

}  // namespace
}  // namespace cq
