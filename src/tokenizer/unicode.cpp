#include "tokenizer/unicode.h"

#include <algorithm>
#include <span>

namespace cq::unicode {
namespace {

struct CodePointRange {
  char32_t first;
  char32_t last;
};

#include "tokenizer/unicode_tables.inc"

bool in_ranges(std::span<const CodePointRange> ranges, char32_t code_point) {
  // First range whose last >= code_point; inside when its first <= code_point.
  auto it = std::lower_bound(ranges.begin(), ranges.end(), code_point,
                             [](const CodePointRange& r, char32_t cp) { return r.last < cp; });
  return it != ranges.end() && it->first <= code_point;
}

bool is_continuation(unsigned char byte) { return (byte & 0xC0) == 0x80; }

}  // namespace

DecodedChar decode_utf8(std::string_view text, size_t pos) {
  const auto byte_at = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte_at(pos);
  if (lead < 0x80) return {lead, 1};
  uint32_t length = 0;
  char32_t code_point = 0;
  // The allowed range of the second byte narrows for E0/ED/F0/F4 (Table 3-7).
  unsigned char second_min = 0x80, second_max = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
    code_point = lead & 0x1Fu;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    code_point = lead & 0x0Fu;
    if (lead == 0xE0) second_min = 0xA0;
    if (lead == 0xED) second_max = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    code_point = lead & 0x07u;
    if (lead == 0xF0) second_min = 0x90;
    if (lead == 0xF4) second_max = 0x8F;
  } else {
    return {kReplacementChar, 1};
  }
  if (pos + length > text.size()) return {kReplacementChar, 1};
  for (uint32_t i = 1; i < length; ++i) {
    const unsigned char byte = byte_at(pos + i);
    if (i == 1 ? (byte < second_min || byte > second_max) : !is_continuation(byte)) {
      return {kReplacementChar, 1};
    }
    code_point = (code_point << 6) | (byte & 0x3Fu);
  }
  return {code_point, length};
}

void append_utf8(std::string& out, char32_t code_point) {
  if (code_point < 0x80) {
    out += static_cast<char>(code_point);
  } else if (code_point < 0x800) {
    out += static_cast<char>(0xC0 | (code_point >> 6));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else if (code_point < 0x10000) {
    out += static_cast<char>(0xE0 | (code_point >> 12));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (code_point >> 18));
    out += static_cast<char>(0x80 | ((code_point >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  }
}

std::string to_valid_utf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t pos = 0;
  while (pos < bytes.size()) {
    const DecodedChar decoded = decode_utf8(bytes, pos);
    if (decoded.code_point != kReplacementChar || decoded.length == 3) {
      out.append(bytes.substr(pos, decoded.length));
      pos += decoded.length;
      continue;
    }
    // A maximal subpart: the lead byte plus the continuation bytes that were still valid
    // for it is one ill-formed subsequence, replaced by one U+FFFD.
    const auto lead = static_cast<unsigned char>(bytes[pos]);
    size_t end = pos + 1;
    size_t expected = lead >= 0xF0 && lead <= 0xF4 ? 4 : lead >= 0xE0 && lead <= 0xEF ? 3
                      : lead >= 0xC2 && lead <= 0xDF ? 2 : 1;
    for (size_t i = 1; i < expected && end < bytes.size(); ++i, ++end) {
      const auto byte = static_cast<unsigned char>(bytes[end]);
      unsigned char low = 0x80, high = 0xBF;
      if (i == 1 && lead == 0xE0) low = 0xA0;
      if (i == 1 && lead == 0xED) high = 0x9F;
      if (i == 1 && lead == 0xF0) low = 0x90;
      if (i == 1 && lead == 0xF4) high = 0x8F;
      if (byte < low || byte > high) break;
    }
    append_utf8(out, kReplacementChar);
    pos = end;
  }
  return out;
}

bool is_letter(char32_t code_point) { return in_ranges(kLetterRanges, code_point); }

bool is_number(char32_t code_point) { return in_ranges(kNumberRanges, code_point); }

bool is_whitespace(char32_t code_point) {
  switch (code_point) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20: case 0x85: case 0xA0:
    case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
      return true;
    default:
      return code_point >= 0x2000 && code_point <= 0x200A;
  }
}

}  // namespace cq::unicode
