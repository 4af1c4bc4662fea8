#pragma once
// Helpers shared by the tests: where the shared assets and generated models are, and
// running the `cq` binary.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/kernel_dispatch.h"
#include "quant/kernel_stats.h"

namespace cq::test {

// ../shared (or $CQ_SHARED). Tests that need it skip when it is absent, and fail instead
// when CQ_REQUIRE_SHARED=1 (as CI sets).
std::filesystem::path shared_dir();
bool shared_required();

// A generated model of `preset`, written once per test run into the build tree.
std::filesystem::path synthetic_model(const std::string& preset);

struct CommandResult {
  int exit_code = 0;
  std::string output;  // stdout and stderr together
};
// Runs the cq binary with `arguments` (a shell-quoted string).
// timeout_seconds > 0: the run is killed after that long (exit code 124, as timeout(1) says).
CommandResult run_cq(const std::string& arguments, int timeout_seconds = 0);
// A shell command line with stderr joined to stdout.
CommandResult run_shell(const std::string& command);

std::filesystem::path source_dir();
// The message of the cq::Error that `action` throws; "" when it throws none.
std::string error_of(const std::function<void()>& action);
std::filesystem::path scratch_dir(const std::string& name);  // fresh, under the build tree
// count draws of N(0, scale²) from a generator seeded with seed (deterministic test data).
std::vector<float> random_normal(int64_t count, uint32_t seed, float scale);
// EXPECT_EQ on every field of two KernelStats.
void expect_same_stats(const KernelStats& a, const KernelStats& b);

// Forces the row and vector kernels onto `path` for the scope (kernels/kernel_dispatch.h),
// then restores the previous choice.
class ScopedKernelPath {
 public:
  explicit ScopedKernelPath(kernels::KernelPath path) : previous_(kernels::kernel_path()) {
    kernels::set_kernel_path(path);
  }
  ~ScopedKernelPath() { kernels::set_kernel_path(previous_); }
  ScopedKernelPath(const ScopedKernelPath&) = delete;
  ScopedKernelPath& operator=(const ScopedKernelPath&) = delete;

 private:
  kernels::KernelPath previous_;
};

}  // namespace cq::test

// Skips (or fails under CQ_REQUIRE_SHARED=1) when `path` under the shared assets is missing.
#define CQ_NEED_SHARED(relative)                                                                  \
  do {                                                                                            \
    const auto cq_needed_path = ::cq::test::shared_dir() / (relative);                            \
    if (!std::filesystem::exists(cq_needed_path)) {                                               \
      if (::cq::test::shared_required()) FAIL() << "missing shared asset " << cq_needed_path;     \
      GTEST_SKIP() << "shared asset " << cq_needed_path << " not found (set CQ_SHARED)";          \
    }                                                                                             \
  } while (0)
