#include "tokenizer/pretokenizer.h"

#include <algorithm>
#include <cstdint>

#include "tokenizer/unicode.h"

namespace cq {
namespace {

enum class CharKind : uint8_t { kLetter, kNumber, kSpace, kOther };

struct ScannedChar {
  char32_t code_point;
  CharKind kind;
};

CharKind kind_of(char32_t code_point) {
  if (unicode::is_letter(code_point)) return CharKind::kLetter;
  if (unicode::is_number(code_point)) return CharKind::kNumber;
  if (unicode::is_whitespace(code_point)) return CharKind::kSpace;
  return CharKind::kOther;
}

bool is_line_break(char32_t c) { return c == U'\r' || c == U'\n'; }

char32_t ascii_lower(char32_t c) { return c >= U'A' && c <= U'Z' ? c + 32 : c; }

class Scanner {
 public:
  explicit Scanner(std::string_view text) {
    chars_.reserve(text.size());
    offsets_.reserve(text.size() + 1);
    for (size_t pos = 0; pos < text.size();) {
      const unicode::DecodedChar decoded = unicode::decode_utf8(text, pos);
      chars_.push_back({decoded.code_point, kind_of(decoded.code_point)});
      offsets_.push_back(pos);
      pos += decoded.length;
    }
    offsets_.push_back(text.size());
  }

  size_t size() const { return chars_.size(); }
  size_t byte_offset(size_t index) const { return offsets_[index]; }

  // Length of the contraction ('s 't 'm 'd 're 've 'll) at i, 0 when none.
  size_t contraction(size_t i, bool ignore_case) const {
    if (chars_[i].code_point != U'\'' || i + 1 >= size()) return 0;
    const auto at = [&](size_t k) {
      return ignore_case ? ascii_lower(chars_[k].code_point) : chars_[k].code_point;
    };
    const char32_t first = at(i + 1);
    if (first == U's' || first == U't' || first == U'm' || first == U'd') return 2;
    if (i + 2 >= size()) return 0;
    const char32_t second = at(i + 2);
    if ((first == U'r' && second == U'e') || (first == U'v' && second == U'e') ||
        (first == U'l' && second == U'l')) {
      return 3;
    }
    return 0;
  }

  // End of the run of `kind` starting at i.
  size_t run_end(size_t i, CharKind kind) const {
    while (i < size() && chars_[i].kind == kind) ++i;
    return i;
  }

  // `\s+(?!\S)|\s+` at a whitespace char: the whole run when it ends the text, else the
  // run minus its last char (which then leads the next piece), but at least one char.
  size_t trailing_whitespace_end(size_t i) const {
    const size_t end = run_end(i, CharKind::kSpace);
    if (end == size() || end - i == 1) return end;
    return end - 1;
  }

  size_t gpt2_match_end(size_t i) const {
    if (const size_t n = contraction(i, /*ignore_case=*/false)) return i + n;
    // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: all three share the optional space.
    if (chars_[i].code_point == U' ' && i + 1 < size() && chars_[i + 1].kind != CharKind::kSpace) {
      return run_end(i + 1, chars_[i + 1].kind);
    }
    if (chars_[i].kind != CharKind::kSpace) return run_end(i, chars_[i].kind);
    return trailing_whitespace_end(i);
  }

  // max_digits: 3 for LLaMA-3's \p{N}{1,3}, 1 for Qwen2's \p{N}.
  size_t llama3_match_end(size_t i, size_t max_digits) const {
    if (const size_t n = contraction(i, /*ignore_case=*/true)) return i + n;
    const ScannedChar c = chars_[i];
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (c.kind == CharKind::kLetter) return run_end(i, CharKind::kLetter);
    if (c.kind != CharKind::kNumber && !is_line_break(c.code_point) && i + 1 < size() &&
        chars_[i + 1].kind == CharKind::kLetter) {
      return run_end(i + 1, CharKind::kLetter);
    }
    // \p{N}{1,3} (Qwen2: \p{N})
    if (c.kind == CharKind::kNumber) return std::min(run_end(i, CharKind::kNumber), i + max_digits);
    // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
    const bool space_then_symbol =
        c.code_point == U' ' && i + 1 < size() && chars_[i + 1].kind == CharKind::kOther;
    if (space_then_symbol || c.kind == CharKind::kOther) {
      size_t end = run_end(space_then_symbol ? i + 1 : i, CharKind::kOther);
      while (end < size() && is_line_break(chars_[end].code_point)) ++end;
      return end;
    }
    // \s*[\r\n]+: greedy \s* backs off to the last line break of the whitespace run.
    const size_t run = run_end(i, CharKind::kSpace);
    for (size_t k = run; k > i; --k) {
      if (is_line_break(chars_[k - 1].code_point)) return k;
    }
    return trailing_whitespace_end(i);
  }

 private:
  std::vector<ScannedChar> chars_;
  std::vector<size_t> offsets_;
};

}  // namespace

std::optional<SplitPattern> recognize_split_pattern(std::string_view regex) {
  if (regex == kGpt2Pattern) return SplitPattern::kGpt2;
  if (regex == kLlama3Pattern) return SplitPattern::kLlama3;
  if (regex == kQwen2Pattern) return SplitPattern::kQwen2;
  return std::nullopt;
}

void split_pretokens(SplitPattern pattern, std::string_view text, std::vector<std::string_view>& pieces) {
  const Scanner scanner(text);
  for (size_t i = 0; i < scanner.size();) {
    const size_t end = pattern == SplitPattern::kGpt2     ? scanner.gpt2_match_end(i)
                       : pattern == SplitPattern::kLlama3 ? scanner.llama3_match_end(i, 3)
                                                          : scanner.llama3_match_end(i, 1);
    const size_t begin_byte = scanner.byte_offset(i);
    pieces.push_back(text.substr(begin_byte, scanner.byte_offset(end) - begin_byte));
    i = end;
  }
}

}  // namespace cq
