#pragma once
// The evaluation strings of the quantization papers' perplexity protocol (docs/EVAL.md §8):
// WikiText-2 = the HF dataset's rows of wiki.test.raw joined with "\n\n"; C4 ("c4-new") =
// the first 1100 validation documents joined with a space, tokenized once and cut to 256
// windows.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace cq {

// HF `wikitext` rows of a raw file: each line keeps its "\n"; blank lines become "".
std::vector<std::string> wikitext_rows(std::string_view raw);
// From wiki.test.raw (raw text) or a JSONL of HF rows ({"text": ...}, .jsonl extension).
std::string wikitext2_eval_string(const std::filesystem::path& file);
// From C4 validation JSONL ({"text": ...}): the first `documents` texts joined with " ".
std::string c4_eval_string(const std::filesystem::path& file, int64_t documents = 1100);
inline constexpr int64_t kC4Windows = 256;

}  // namespace cq
