#pragma once
// Added tokens (special tokens such as "<s>" or "<|eot_id|>") are cut out of the text
// before anything else sees it, leftmost-longest first, as the references do.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cq {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;      // skipped by decode(skip_special_tokens=true)
  bool lstrip = false;       // also swallows the whitespace before it
  bool rstrip = false;       // also swallows the whitespace after it
  bool single_word = false;  // only matches when not inside a word
  bool normalized = false;   // matched in the normalized text instead of the raw text
};

class AddedTokenSplitter {
 public:
  AddedTokenSplitter() = default;
  explicit AddedTokenSplitter(std::vector<AddedToken> tokens);

  struct Segment {
    std::string_view text;  // the text between matches (id < 0)
    int32_t id;             // the matched token's id, or -1
    size_t offset;          // byte offset of the segment in the split text
  };
  // Text segments may be empty only when the text is.
  std::vector<Segment> split(std::string_view text) const;
  bool empty() const { return tokens_.empty(); }

 private:
  std::vector<AddedToken> tokens_;                 // longest first
  std::array<std::vector<uint32_t>, 256> by_first_byte_;  // indices into tokens_
};

}  // namespace cq
