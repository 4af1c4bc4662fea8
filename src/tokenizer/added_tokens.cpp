#include "tokenizer/added_tokens.h"

#include <algorithm>

#include "tokenizer/unicode.h"

namespace cq {
namespace {

bool is_continuation_byte(char byte) { return (static_cast<unsigned char>(byte) & 0xC0) == 0x80; }

// Start of the character that ends just before `pos`.
size_t previous_char_start(std::string_view text, size_t pos) {
  size_t start = pos - 1;
  while (start > 0 && is_continuation_byte(text[start])) --start;
  return start;
}

bool is_word_char(char32_t c) { return unicode::is_letter(c) || unicode::is_number(c) || c == U'_'; }

}  // namespace

AddedTokenSplitter::AddedTokenSplitter(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)) {
  std::erase_if(tokens_, [](const AddedToken& t) { return t.content.empty(); });
  std::stable_sort(tokens_.begin(), tokens_.end(),
                   [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
  for (uint32_t i = 0; i < tokens_.size(); ++i) {
    by_first_byte_[static_cast<unsigned char>(tokens_[i].content[0])].push_back(i);
  }
}

std::vector<AddedTokenSplitter::Segment> AddedTokenSplitter::split(std::string_view text) const {
  std::vector<Segment> segments;
  size_t segment_start = 0;  // start of the pending text segment
  size_t pos = 0;
  while (pos < text.size()) {
    const AddedToken* match = nullptr;
    for (const uint32_t index : by_first_byte_[static_cast<unsigned char>(text[pos])]) {
      const AddedToken& token = tokens_[index];
      if (text.compare(pos, token.content.size(), token.content) != 0) continue;
      if (token.single_word) {
        const size_t end = pos + token.content.size();
        const bool word_before =
            pos > 0 && is_word_char(unicode::decode_utf8(text, previous_char_start(text, pos)).code_point);
        const bool word_after = end < text.size() && is_word_char(unicode::decode_utf8(text, end).code_point);
        if (word_before || word_after) continue;
      }
      match = &token;
      break;
    }
    if (match == nullptr) {
      ++pos;
      continue;
    }
    size_t match_start = pos;
    size_t match_end = pos + match->content.size();
    if (match->lstrip) {
      while (match_start > segment_start) {
        const size_t prev = previous_char_start(text, match_start);
        if (!unicode::is_whitespace(unicode::decode_utf8(text, prev).code_point)) break;
        match_start = prev;
      }
    }
    if (match->rstrip) {
      while (match_end < text.size()) {
        const unicode::DecodedChar next = unicode::decode_utf8(text, match_end);
        if (!unicode::is_whitespace(next.code_point)) break;
        match_end += next.length;
      }
    }
    if (match_start > segment_start) {
      segments.push_back({text.substr(segment_start, match_start - segment_start), -1, segment_start});
    }
    segments.push_back({text.substr(match_start, match_end - match_start), match->id, match_start});
    segment_start = pos = match_end;
  }
  if (segment_start < text.size() || segments.empty()) {
    segments.push_back({text.substr(segment_start), -1, segment_start});
  }
  return segments;
}

}  // namespace cq
