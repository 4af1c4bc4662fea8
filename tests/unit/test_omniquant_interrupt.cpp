// `cq omniquant-calibrate` interrupted: SIGINT during training leaves no parameter file (nor a
// temporary beside it), and the process dies of the signal.
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "test_support.h"

extern char** environ;

namespace cq {
namespace {

TEST(OmniQuantInterrupted, SigintLeavesNoParameterFile) {
  CQ_NEED_SHARED("models/tinyopt");
  const auto model = (test::shared_dir() / "models" / "tinyopt").string();
  const auto dir = test::scratch_dir("omni-interrupt");
  {
    std::ofstream text(dir / "long.txt");
    for (int i = 0; i < 20000; ++i) text << "the quick brown fox " << i << " jumps\n";
  }
  const char* env_bin = std::getenv("CQ_BIN");
  const std::string cq = env_bin && *env_bin ? env_bin : std::string(CQ_BINARY_DIR) + "/cq";
  const std::string out = (dir / "omni_parameters.pth").string();
  const std::string calib = (dir / "long.txt").string();
  std::vector<std::string> args = {cq, "omniquant-calibrate", "--model", model, "--calib", calib, "--calib-samples", "64",
                                   "--calib-seqlen", "256", "--epochs", "50", "--out", out, "--quiet"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  ASSERT_EQ(::posix_spawn(&pid, cq.c_str(), nullptr, nullptr, argv.data(), environ), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  ::kill(pid, SIGINT);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) GTEST_SKIP() << "the run finished before the signal; nothing to check";
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT) << "status " << status;
  EXPECT_FALSE(std::filesystem::exists(out));
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    EXPECT_EQ(entry.path().filename().string().find("omni_parameters"), std::string::npos) << entry.path();
}

}  // namespace
}  // namespace cq
