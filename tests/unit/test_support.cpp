#include "test_support.h"

#include <unistd.h>

#include <array>
#include <cstdio>
#include <mutex>
#include <random>

#include "model/synthetic.h"
#include "util/error.h"

namespace cq::test {

std::filesystem::path source_dir() { return CQ_SOURCE_DIR; }

std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::filesystem::path shared_dir() {
  if (const char* env = std::getenv("CQ_SHARED"); env && *env) return env;
  return source_dir().parent_path() / "shared";
}

bool shared_required() {
  const char* env = std::getenv("CQ_REQUIRE_SHARED");
  return env && std::string(env) == "1";
}

std::filesystem::path scratch_dir(const std::string& name) {
  const auto dir = std::filesystem::path(CQ_BINARY_DIR) / "test-scratch" / (name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::filesystem::path synthetic_model(const std::string& preset) {
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  const auto dir = std::filesystem::path(CQ_BINARY_DIR) / "test-models" / (preset + "-" + std::to_string(::getpid()));
  if (!std::filesystem::exists(dir / "config.json")) write_synthetic_model(preset, dir);
  return dir;
}

CommandResult run_shell(const std::string& command) {
  CommandResult result;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe) {
    result.exit_code = -1;
    return result;
  }
  std::array<char, 4096> buffer{};
  size_t read = 0;
  while ((read = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) result.output.append(buffer.data(), read);
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

CommandResult run_cq(const std::string& arguments, int timeout_seconds) {
  const char* binary = std::getenv("CQ_BIN");
  const std::string cq = binary && *binary ? binary : std::string(CQ_BINARY_DIR) + "/cq";
  const std::string limit = timeout_seconds > 0 ? "timeout " + std::to_string(timeout_seconds) + " " : "";
  return run_shell(limit + "'" + cq + "' " + arguments);
}

std::vector<float> random_normal(int64_t count, uint32_t seed, float scale) {
  std::mt19937 generator(seed);
  std::normal_distribution<float> normal(0.f, scale);
  std::vector<float> values(static_cast<size_t>(count));
  for (float& value : values) value = normal(generator);
  return values;
}

void expect_same_stats(const KernelStats& a, const KernelStats& b) {
  EXPECT_EQ(a.elements, b.elements);
  EXPECT_EQ(a.kernel, b.kernel);
  EXPECT_EQ(a.exact_zeros, b.exact_zeros);
  EXPECT_EQ(a.column_max_ge_row_max, b.column_max_ge_row_max);
  EXPECT_EQ(a.bound_below_per_token, b.bound_below_per_token);
  EXPECT_EQ(a.clipped, b.clipped);
}

}  // namespace cq::test
