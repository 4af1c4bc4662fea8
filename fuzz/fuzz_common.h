#pragma once
// Shared by the libFuzzer targets in fuzz/ and by their regression replay
// (tests/unit/test_fuzz_regressions.cpp, which includes the target files with
// CQ_FUZZ_REPLAY defined so that the very same entry points are exercised).
//
// Contract of every target: cq::Error is an expected outcome (the parser refused the input
// with a message); anything else -- a crash, a sanitizer report, any other exception
// (it escapes and aborts), an allocation beyond -rss_limit_mb -- is a finding.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "util/error.h"

namespace cq::fuzz {

// A private scratch directory per process, emptied before each input.
inline std::filesystem::path fresh_dir() {
  static const std::filesystem::path root = [] {
    std::error_code ec;
    auto base = std::filesystem::exists("/dev/shm") ? std::filesystem::path("/dev/shm")
                                                    : std::filesystem::temp_directory_path();
    auto dir = base / ("cq-fuzz-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir, ec);
    std::filesystem::create_directories(dir);
    return dir;
  }();
  for (const auto& entry : std::filesystem::directory_iterator(root)) std::filesystem::remove_all(entry.path());
  return root;
}

inline void write_file(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Splits the input into `parts` pieces at its first parts-1 NUL bytes (text formats never
// contain NUL); the last piece is the remainder and may contain NULs (binary files).
// Missing pieces are empty.
inline std::vector<std::string_view> split(std::string_view input, size_t parts) {
  std::vector<std::string_view> out;
  while (out.size() + 1 < parts) {
    const size_t nul = input.find('\0');
    if (nul == std::string_view::npos) break;
    out.push_back(input.substr(0, nul));
    input.remove_prefix(nul + 1);
  }
  out.push_back(input);
  while (out.size() < parts) out.emplace_back();
  return out;
}

// Runs `body`; a cq::Error is an accepted outcome, everything else propagates.
template <typename Body>
void expect_only_cq_errors(Body&& body) {
  try {
    body();
  } catch (const cq::Error&) {
  }
}

}  // namespace cq::fuzz

// CQ_FUZZ_TARGET(name) { body using `input` (std::string_view) } defines
// cq::fuzz::run_<name>(input) and, unless CQ_FUZZ_REPLAY is defined, the libFuzzer entry.
#ifdef CQ_FUZZ_REPLAY
#define CQ_FUZZ_TARGET(name) \
  namespace cq::fuzz {       \
  inline void run_##name(std::string_view input); \
  }                          \
  inline void cq::fuzz::run_##name(std::string_view input)
#else
#define CQ_FUZZ_TARGET(name)                                                                 \
  namespace cq::fuzz {                                                                       \
  inline void run_##name(std::string_view input);                                            \
  }                                                                                          \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {                  \
    cq::fuzz::run_##name(std::string_view(reinterpret_cast<const char*>(data), size));      \
    return 0;                                                                                \
  }                                                                                          \
  inline void cq::fuzz::run_##name(std::string_view input)
#endif
