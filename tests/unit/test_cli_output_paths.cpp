// Issue 18.4: every output path is checked before any work starts, and errors name the
// user's path (never the temporary file beside it) and the missing folder.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <string>

#include "test_support.h"
#include "util/atomic_file.h"

namespace cq {
namespace {

void expect_early_failure(const std::string& arguments, const std::string& must_contain) {
  const auto result = test::run_cq(arguments);
  EXPECT_EQ(result.exit_code, 1) << arguments << "\n" << result.output;
  EXPECT_EQ(result.output.rfind("cq: error: ", 0), 0u) << result.output;
  EXPECT_NE(result.output.find(must_contain), std::string::npos) << arguments << "\n" << result.output;
  // One line and nothing else: no result was computed first.
  EXPECT_EQ(std::count(result.output.begin(), result.output.end(), '\n'), 1) << arguments << "\n" << result.output;
}

TEST(CliOutputPaths, MissingFolderIsNamedBeforeAnyWork) {
  CQ_NEED_SHARED("models/stories260k");
  const std::string model = " --model '" + (test::shared_dir() / "models/stories260k").string() + "'";
  const std::string text = " --text '" + (test::shared_dir() / "data/tinystories/TinyStories-valid.first100.txt").string() + "'";
  const std::string missing = "/nonexistent-cq-folder/x.json: folder /nonexistent-cq-folder does not exist";
  expect_early_failure("ppl" + model + text + " --max-windows 2 --json /nonexistent-cq-folder/x.json", "--json " + missing);
  expect_early_failure("info" + model + " --json /nonexistent-cq-folder/x.json", missing);
  expect_early_failure("kernel" + model + text + " --max-windows 1 --csv /nonexistent-cq-folder/x.json", "--csv " + missing);
  expect_early_failure("sweep" + model + text + " --max-windows 1 --grid scheme=w8a8 --svg /nonexistent-cq-folder/x.json",
                       "--svg " + missing);
  expect_early_failure("eval" + model + " --tasks piqa --data-dir /nonexistent --json /nonexistent-cq-folder/x.json", missing);
  expect_early_failure("demo --json /nonexistent-cq-folder/x.json", missing);
}

TEST(CliOutputPaths, FoldersAndFilesInTheWay) {
  const auto dir = test::scratch_dir("cli-output-paths");
  const std::string model = " --model '" + test::synthetic_model("opt-pre").string() + "'";
  expect_early_failure("info" + model + " --json '" + dir.string() + "'", "is a folder; give a file name");
  std::ofstream(dir / "a-file") << "x";
  expect_early_failure("quantize" + model + " --scheme w8a8 --out '" + (dir / "a-file").string() + "'", "exists and is not a folder");
  expect_early_failure("quantize" + model + " --scheme w8a8 --out '" + (dir / "a-file" / "sub").string() + "'", "is not a folder");
  expect_early_failure("synth --preset opt-pre --out '" + (dir / "a-file").string() + "'", "exists and is not a folder");
  if (::geteuid() != 0) {  // root writes anywhere
    std::filesystem::create_directories(dir / "read-only");
    std::filesystem::permissions(dir / "read-only", std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
    expect_early_failure("info" + model + " --json '" + (dir / "read-only" / "x.json").string() + "'", "is not writable");
  }
}

// The late failure (a folder removed during the run) names the user's path, not the temporary.
TEST(CliOutputPaths, AtomicWriteNamesTheUsersPath) {
  const std::string error = test::error_of([] { write_file_atomically("/nonexistent-cq-folder/out.json", "{}"); });
  EXPECT_NE(error.find("/nonexistent-cq-folder/out.json: cannot create a file in /nonexistent-cq-folder"), std::string::npos) << error;
  EXPECT_EQ(error.find(".tmp."), std::string::npos) << error;
}

}  // namespace
}  // namespace cq
