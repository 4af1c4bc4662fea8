#pragma once
// OmniQuant's parameter fixtures for the tests: tests/reference/omniquant_reference.py
// --write-fixtures recreates them (deterministically, in the build tree; no parameter file
// is committed): <model>.pth (LET + LWC per output channel) and <model>_g128.pth (LWC only,
// groups of 128) for both shared models.
#include <filesystem>
#include <string>

#include "test_support.h"

namespace cq::test {

// The fixture directory, written once per process; empty when /usr/bin/python3 with torch
// cannot write it.
inline const std::filesystem::path& omniquant_fixtures() {
  static const std::filesystem::path dir = [] {
    const std::filesystem::path scratch = scratch_dir("omniquant_fixtures");
    const auto written = run_shell("/usr/bin/python3 '" + (source_dir() / "tests/reference/omniquant_reference.py").string() +
                                   "' --shared '" + shared_dir().string() + "' --write-fixtures '" + scratch.string() + "' 2>&1");
    return written.exit_code == 0 ? scratch : std::filesystem::path();
  }();
  return dir;
}

}  // namespace cq::test

#define CQ_NEED_OMNIQUANT_FIXTURES()                                                                    \
  do {                                                                                                  \
    if (::cq::test::omniquant_fixtures().empty())                                                      \
      GTEST_SKIP() << "cannot write OmniQuant fixtures (needs /usr/bin/python3 with torch)";           \
  } while (0)
