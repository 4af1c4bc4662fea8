#pragma once
// UTF-8 decoding/encoding and the character classes the pre-tokenizer patterns use
// (\p{L}, \p{N}, \s). Invalid UTF-8 never throws: each bad byte decodes on its own as
// U+FFFD (class "other"), so byte-level tokenizers still see every input byte.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace cq::unicode {

inline constexpr char32_t kReplacementChar = 0xFFFD;

struct DecodedChar {
  char32_t code_point;  // kReplacementChar for an invalid byte
  uint32_t length;      // bytes consumed, >= 1
};

// Decodes the character starting at text[pos] (pos < text.size()). Only well-formed
// sequences per Unicode Table 3-7 are accepted (no overlongs, surrogates, > U+10FFFF).
DecodedChar decode_utf8(std::string_view text, size_t pos);

void append_utf8(std::string& out, char32_t code_point);

// Replaces each maximal ill-formed subsequence by U+FFFD, as Rust's from_utf8_lossy and
// the WHATWG TextDecoder do; what the references' decode() returns for invalid bytes.
std::string to_valid_utf8(std::string_view bytes);

bool is_letter(char32_t code_point);      // general category L*
bool is_number(char32_t code_point);      // general category N*
bool is_whitespace(char32_t code_point);  // White_Space property (Oniguruma's \s)

}  // namespace cq::unicode
