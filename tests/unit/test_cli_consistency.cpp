// Issue 18.9: parse errors as `cq: error:` with "did you mean"; cq bench fits its default
// sizes to the model; help shows no CLI11 internals; README's examples run on the shared
// models; --threads N; the docs name no paths of one machine.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>

#include "cli/parse_errors.h"
#include "test_support.h"
#include "util/text_file.h"

namespace cq {
namespace {

void expect_one_error_line(const test::CommandResult& result, const std::string& must_contain) {
  EXPECT_NE(result.exit_code, 0) << result.output;
  EXPECT_EQ(result.output.rfind("cq: error: ", 0), 0u) << result.output;
  EXPECT_NE(result.output.find(must_contain), std::string::npos) << result.output;
  EXPECT_EQ(std::count(result.output.begin(), result.output.end(), '\n'), 1) << result.output;
}

TEST(CliConsistency, EditDistance) {
  EXPECT_EQ(cli::edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(cli::edit_distance("--schem", "--scheme"), 1u);
  EXPECT_EQ(cli::edit_distance("", "abc"), 3u);
  EXPECT_EQ(cli::edit_distance("same", "same"), 0u);
}

TEST(CliConsistency, ParseErrorsArePrefixedAndSuggest) {
  const std::string model = "'" + test::synthetic_model("opt-pre").string() + "'";
  expect_one_error_line(test::run_cq("ppl --model " + model + " --text x --schem w8a8"), "(did you mean --scheme?)");
  expect_one_error_line(test::run_cq("ppl --model " + model + " --text x --alpah=0.3"), "(did you mean --alpha?)");
  expect_one_error_line(test::run_cq("pll --model " + model), "(did you mean cq ppl?)");
  expect_one_error_line(test::run_cq("quantise --model " + model), "(did you mean cq quantize?)");
  // Nothing close: no suggestion, still one prefixed line.
  const auto far = test::run_cq("ppl --model " + model + " --completely-unrelated 3");
  expect_one_error_line(far, "--completely-unrelated");
  EXPECT_EQ(far.output.find("did you mean"), std::string::npos) << far.output;
  expect_one_error_line(test::run_cq("ppl --text x"), "--model is required");
  // --help is not an error.
  const auto help = test::run_cq("ppl --help");
  EXPECT_EQ(help.exit_code, 0) << help.output;
  EXPECT_EQ(help.output.find("cq: error"), std::string::npos);
}

TEST(CliConsistency, HelpShowsNoNegatedDefaults) {
  for (const char* command : {"ppl", "quantize", "sweep", "eval", "kernel", "generate", "bench"}) {
    const auto help = test::run_cq(std::string(command) + " --help");
    EXPECT_EQ(help.exit_code, 0) << help.output;
    EXPECT_NE(help.output.find("--awq-no-clip"), std::string::npos) << command;
    EXPECT_EQ(help.output.find("{false}"), std::string::npos) << command << "\n" << help.output;
    EXPECT_NE(help.output.find("--threads"), std::string::npos) << command;
  }
}

TEST(CliConsistency, BenchFitsItsDefaultSizesToTheModel) {
  const std::string model = "'" + test::synthetic_model("opt-pre").string() + "'";  // 64 learned positions
  const auto result = test::run_cq("bench --model " + model + " --repeats 1 --json");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("bench: 1 prompt + 63 generated tokens, fitted to the model's 64 positions"), std::string::npos)
      << result.output;
  const auto json = nlohmann::json::parse(result.output.substr(result.output.find('{')));
  EXPECT_EQ(json["prompt_tokens"], 1);
  EXPECT_EQ(json["gen_tokens"], 63);
  // A size given is kept: the other one is fitted around it.
  const auto given = test::run_cq("bench --model " + model + " --repeats 1 --prompt-tokens 40 --json");
  ASSERT_EQ(given.exit_code, 0) << given.output;
  EXPECT_NE(given.output.find("bench: 40 prompt + 24 generated tokens"), std::string::npos) << given.output;
}

TEST(CliConsistency, ThreadsFlag) {
  const std::string model = "'" + test::synthetic_model("llama-gqa").string() + "'";
  const auto one = test::run_cq("bench --model " + model + " --repeats 1 --prompt-tokens 8 --gen-tokens 2 --threads 1 --json");
  ASSERT_EQ(one.exit_code, 0) << one.output;
  EXPECT_EQ(nlohmann::json::parse(one.output)["threads"], 1) << one.output;
  if (std::thread::hardware_concurrency() > 1) {
    const auto all = test::run_cq("bench --model " + model + " --repeats 1 --prompt-tokens 8 --gen-tokens 2 --json");
    ASSERT_EQ(all.exit_code, 0) << all.output;
    EXPECT_GT(nlohmann::json::parse(all.output)["threads"].get<int>(), 1) << all.output;
  }
  expect_one_error_line(test::run_cq("bench --model " + model + " --threads 0"), "--threads: must be a count >= 1");
  expect_one_error_line(test::run_cq("bench --model " + model + " --threads 100000"), "--threads: at most 1024");
}

// README: `cq tokenize --model DIR --decode --prompt "..."` decodes on stories260k.
TEST(CliConsistency, ReadmeDecodeExampleRunsOnASharedModel) {
  CQ_NEED_SHARED("models/stories260k");
  const std::string readme = read_text_file(test::source_dir() / "README.md");
  std::smatch match;
  ASSERT_TRUE(std::regex_search(readme, match, std::regex(R"re(cq tokenize --model (\S+) --decode --prompt "([0-9 ]+)")re")));
  EXPECT_EQ(match[1].str(), "../shared/models/stories260k");
  const auto result = test::run_cq("tokenize --model '" + (test::shared_dir() / "models/stories260k").string() +
                                   "' --decode --prompt '" + match[2].str() + "'");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("Hello world"), std::string::npos) << result.output;
}

TEST(CliConsistency, DocsNameNoMachinePaths) {
  std::vector<std::filesystem::path> documents = {test::source_dir() / "README.md"};
  for (const auto& entry : std::filesystem::directory_iterator(test::source_dir() / "docs"))
    if (entry.path().extension() == ".md") documents.push_back(entry.path());
  const std::regex machine_path(R"((^|[\s`'"(=])/(work|root|home)/)");
  for (const auto& document : documents) {
    const std::string text = read_text_file(document);
    std::smatch match;
    EXPECT_FALSE(std::regex_search(text, match, machine_path))
        << document << " names a path of one machine near: " << text.substr(static_cast<std::size_t>(std::max<long>(0, match.position(0) - 40)), 100);
  }
}

}  // namespace
}  // namespace cq
