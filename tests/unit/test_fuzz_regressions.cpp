// Replays every input kept in tests/fuzz-regressions/<target>/ through the same entry point
// as the fuzz target fuzz/<target>.cpp (included here with CQ_FUZZ_REPLAY): each must either
// be accepted or refused with a cq::Error; any other exception fails the test, and a crash
// or sanitizer report fails it under `make test-sanitize`.
#define CQ_FUZZ_REPLAY 1
#include "../../fuzz/fuzz_cli.cpp"
#include "../../fuzz/fuzz_config.cpp"
#include "../../fuzz/fuzz_eval_csv.cpp"
#include "../../fuzz/fuzz_eval_jsonl.cpp"
#include "../../fuzz/fuzz_pickle.cpp"
#include "../../fuzz/fuzz_quantization_config.cpp"
#include "../../fuzz/fuzz_safetensors.cpp"
#include "../../fuzz/fuzz_safetensors_index.cpp"
#include "../../fuzz/fuzz_sentencepiece.cpp"
#include "../../fuzz/fuzz_sweep_grid.cpp"
#include "../../fuzz/fuzz_tokenizer_json.cpp"
#include "../../fuzz/fuzz_vocab_merges.cpp"
#include "../../fuzz/fuzz_zip_archive.cpp"

#include <functional>
#include <map>

#include "test_support.h"

namespace cq {
namespace {

const std::map<std::string, std::function<void(std::string_view)>>& targets() {
  static const std::map<std::string, std::function<void(std::string_view)>> all = {
      {"fuzz_cli", fuzz::run_cli},
      {"fuzz_config", fuzz::run_config},
      {"fuzz_eval_csv", fuzz::run_eval_csv},
      {"fuzz_eval_jsonl", fuzz::run_eval_jsonl},
      {"fuzz_pickle", fuzz::run_pickle},
      {"fuzz_quantization_config", fuzz::run_quantization_config},
      {"fuzz_safetensors", fuzz::run_safetensors},
      {"fuzz_safetensors_index", fuzz::run_safetensors_index},
      {"fuzz_sentencepiece", fuzz::run_sentencepiece},
      {"fuzz_sweep_grid", fuzz::run_sweep_grid},
      {"fuzz_tokenizer_json", fuzz::run_tokenizer_json},
      {"fuzz_vocab_merges", fuzz::run_vocab_merges},
      {"fuzz_zip_archive", fuzz::run_zip_archive},
  };
  return all;
}

TEST(FuzzRegression, EveryKeptInputIsAcceptedOrRefusedWithCqError) {
  const auto root = test::source_dir() / "tests" / "fuzz-regressions";
  ASSERT_TRUE(std::filesystem::is_directory(root)) << root;
  int replayed = 0;
  for (const auto& dir : std::filesystem::directory_iterator(root)) {
    if (!dir.is_directory()) continue;
    const auto target = targets().find(dir.path().filename().string());
    ASSERT_NE(target, targets().end()) << dir.path() << " has no replay entry here";
    for (const auto& file : std::filesystem::directory_iterator(dir.path())) {
      std::ifstream in(file.path(), std::ios::binary);
      const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      EXPECT_NO_THROW(target->second(bytes)) << file.path();
      ++replayed;
    }
  }
  EXPECT_GT(replayed, 0);
}

}  // namespace
}  // namespace cq
