// What the compressed-tensors export tests (W8A8 and W4A16 pack-quantized) share: the text,
// cq's perplexity of an in-process model, and the reference loader's perplexity of exports
// (tests/reference/compressed_tensors_reference.py, one Python process for all of them), on
// the same windows.
#pragma once

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "eval/perplexity.h"
#include "model/transformer.h"
#include "test_support.h"

namespace cq::test {

inline constexpr int64_t kExportSeqlen = 128;
inline constexpr int64_t kExportWindows = 6;

inline std::string export_text_path() {
  return (shared_dir() / "data/tinystories/TinyStories-valid.first100.txt").string();
}

inline double export_cq_perplexity(Transformer& model, const std::vector<int32_t>& tokens) {
  PerplexityOptions options;
  options.seqlen = kExportSeqlen;
  options.max_windows = kExportWindows;
  options.show_progress = false;
  return evaluate_perplexity(model, tokens, options).perplexity;
}

inline std::vector<double> export_reference_perplexities(const std::vector<std::filesystem::path>& exports,
                                                         const std::vector<int32_t>& tokens) {
  const std::filesystem::path tokens_file = scratch_dir("ct_tokens") / "tokens.json";
  std::ofstream(tokens_file) << nlohmann::json(tokens).dump();
  std::string models;
  for (const std::filesystem::path& dir : exports) models += fmt::format(" --model '{}'", dir.string());
  const auto run = run_shell(fmt::format("/usr/bin/python3 '{}'{} --tokens '{}' --seqlen {} --max-windows {}",
                                         (source_dir() / "tests/reference/compressed_tensors_reference.py").string(),
                                         models, tokens_file.string(), kExportSeqlen, kExportWindows));
  EXPECT_EQ(run.exit_code, 0) << run.output;
  std::vector<double> result;
  if (run.exit_code != 0) return result;
  std::istringstream lines(run.output);
  for (std::string line; std::getline(lines, line);)
    if (line.starts_with("{")) result.push_back(nlohmann::json::parse(line)["ppl"].get<double>());
  return result;
}

}  // namespace cq::test
