// Issue 18.8: when stderr is not a terminal (run_cq pipes it), progress is a few lines
// (start, about every 10 %, end); --quiet prints none; every bar names its job.
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "test_support.h"

namespace cq {
namespace {

std::vector<std::string> progress_lines(const std::string& output) {
  std::vector<std::string> lines;
  std::istringstream stream(output);
  for (std::string line; std::getline(stream, line);)
    if (line.find("windows/s") != std::string::npos) lines.push_back(line);
  return lines;
}

// A shell-quoted path under the shared assets (appended, not `"'" + ... + "'"`: GCC 12's -Wrestrict false positive).
std::string shared(const std::string& relative) {
  std::string quoted = "'";
  quoted += (test::shared_dir() / relative).string();
  quoted += "'";
  return quoted;
}

TEST(CliProgress, PipedLogsGetAStartLineAFewMoreAndAnEnd) {
  CQ_NEED_SHARED("models/stories260k");
  // 135 windows of 256 tokens, one at a time: 135 updates.
  const auto result = test::run_cq("ppl --model " + shared("models/stories260k") + " --text " +
                                   shared("data/tinystories/TinyStories-valid.first100.txt") + " --seqlen 256");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto lines = progress_lines(result.output);
  ASSERT_GE(lines.size(), 3u) << result.output;
  EXPECT_LE(lines.size(), 12u) << result.output;
  EXPECT_EQ(lines.front().rfind("ppl [", 0), 0u) << lines.front();
  EXPECT_NE(lines.front().find(" 0/135 "), std::string::npos) << lines.front();
  EXPECT_NE(lines.back().find(" 135/135 "), std::string::npos) << lines.back();
  EXPECT_EQ(result.output.find('\r'), std::string::npos);
}

TEST(CliProgress, QuietPrintsNoProgress) {
  CQ_NEED_SHARED("models/stories260k");
  const std::string model = " --model " + shared("models/stories260k");
  const std::string text = " --text " + shared("data/tinystories/TinyStories-valid.first100.txt");
  for (const std::string& command :
       {"ppl" + model + text + " --seqlen 256 --max-windows 20 --quiet",
        "kernel" + model + text + " --seqlen 256 --max-windows 20 --quiet",
        "sweep" + model + text + " --seqlen 256 --max-windows 2 --grid scheme=w8a8 --quiet"}) {
    const auto result = test::run_cq(command);
    ASSERT_EQ(result.exit_code, 0) << command << "\n" << result.output;
    EXPECT_TRUE(progress_lines(result.output).empty()) << command << "\n" << result.output;
    EXPECT_EQ(result.output.find("[1/2]"), std::string::npos) << command << "\n" << result.output;
  }
}

TEST(CliProgress, KernelBarsSayKernel) {
  CQ_NEED_SHARED("models/stories260k");
  const auto result = test::run_cq("kernel --model " + shared("models/stories260k") + " --text " +
                                   shared("data/tinystories/TinyStories-valid.first100.txt") + " --seqlen 256 --max-windows 20");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto lines = progress_lines(result.output);
  ASSERT_FALSE(lines.empty()) << result.output;
  for (const std::string& line : lines) EXPECT_EQ(line.rfind("kernel [", 0), 0u) << line;
}

}  // namespace
}  // namespace cq
