#pragma once
// Hand-written scanners for the two split patterns byte-level BPE tokenizers use. They
// implement exactly the leftmost-alternative, greedy-with-backtracking semantics of the
// regexes (as Oniguruma / the `regex` module run them), without a regex library.
#include <optional>
#include <string_view>
#include <vector>

namespace cq {

enum class SplitPattern {
  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kGpt2,
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
  //  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  kLlama3,
  // Qwen2's: LLaMA-3's with single digits, \p{N} instead of \p{N}{1,3}
  kQwen2,
};

inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

inline constexpr std::string_view kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// The scanner for a pattern string from a tokenizer file, or nullopt when unsupported.
std::optional<SplitPattern> recognize_split_pattern(std::string_view regex);

// Appends the matches of `pattern` in `text`, in order. The patterns match every
// character, so the pieces concatenate back to `text`.
void split_pretokens(SplitPattern pattern, std::string_view text, std::vector<std::string_view>& pieces);

}  // namespace cq
