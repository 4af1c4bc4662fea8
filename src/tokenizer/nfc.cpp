#include "tokenizer/nfc.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "tokenizer/unicode.h"

namespace cq::unicode {

namespace {

struct CombiningClass {
  char32_t code_point;
  uint8_t value;
};
struct Decomposition {
  char32_t code_point;
  uint8_t length;
  char32_t sequence[4];
};
struct Composition {
  char32_t first, second, composite;
};

#include "tokenizer/nfc_tables.inc"

// Hangul syllables (Unicode 3.12): S = SBase + (L·VCount + V)·TCount + T.
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

uint8_t combining_class(char32_t c) {
  const auto* end = std::end(kCombiningClasses);
  const auto* found = std::lower_bound(std::begin(kCombiningClasses), end, c,
                                       [](const CombiningClass& e, char32_t v) { return e.code_point < v; });
  return found != end && found->code_point == c ? found->value : 0;
}

void decompose(char32_t c, std::vector<char32_t>& out) {
  if (c >= kSBase && c < kSBase + kSCount) {
    const char32_t index = c - kSBase;
    out.push_back(kLBase + index / kNCount);
    out.push_back(kVBase + (index % kNCount) / kTCount);
    if (index % kTCount != 0) out.push_back(kTBase + index % kTCount);
    return;
  }
  const auto* end = std::end(kDecompositions);
  const auto* found = std::lower_bound(std::begin(kDecompositions), end, c,
                                       [](const Decomposition& e, char32_t v) { return e.code_point < v; });
  if (found != end && found->code_point == c) out.insert(out.end(), found->sequence, found->sequence + found->length);
  else out.push_back(c);
}

// The primary composite of (first, second), or 0.
char32_t compose_pair(char32_t first, char32_t second) {
  if (first >= kLBase && first < kLBase + kLCount && second >= kVBase && second < kVBase + kVCount)
    return kSBase + ((first - kLBase) * kVCount + (second - kVBase)) * kTCount;
  if (first >= kSBase && first < kSBase + kSCount && (first - kSBase) % kTCount == 0 && second > kTBase &&
      second < kTBase + kTCount)
    return first + (second - kTBase);
  const auto* end = std::end(kCompositions);
  const auto* found = std::lower_bound(std::begin(kCompositions), end, std::pair{first, second},
                                       [](const Composition& e, const std::pair<char32_t, char32_t>& v) {
                                         return e.first < v.first || (e.first == v.first && e.second < v.second);
                                       });
  return found != end && found->first == first && found->second == second ? found->composite : 0;
}

}  // namespace

std::string nfc(std::string_view text) {
  const std::string valid = to_valid_utf8(text);
  std::vector<char32_t> chars;
  chars.reserve(valid.size());
  for (size_t pos = 0; pos < valid.size();) {
    const DecodedChar decoded = decode_utf8(valid, pos);
    decompose(decoded.code_point, chars);
    pos += decoded.length;
  }
  // Canonical ordering: stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < chars.size();) {
    if (combining_class(chars[i]) == 0) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < chars.size() && combining_class(chars[end]) != 0) ++end;
    std::stable_sort(chars.begin() + static_cast<std::ptrdiff_t>(i), chars.begin() + static_cast<std::ptrdiff_t>(end),
                     [](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
    i = end;
  }
  // Canonical composition: each character joins the last starter unless blocked (a
  // character between them with a class >= its own, or a starter).
  std::vector<char32_t> composed;
  composed.reserve(chars.size());
  size_t starter = SIZE_MAX;
  int last_class = -1;
  for (char32_t c : chars) {
    const int cls = combining_class(c);
    if (starter != SIZE_MAX) {
      const bool blocked = last_class != -1 && (last_class == 0 || last_class >= cls);
      if (!blocked) {
        if (const char32_t joined = compose_pair(composed[starter], c)) {
          composed[starter] = joined;
          continue;
        }
      }
    }
    if (cls == 0) {
      starter = composed.size();
      last_class = -1;
    } else {
      last_class = cls;
    }
    composed.push_back(c);
  }
  std::string out;
  out.reserve(valid.size());
  for (char32_t c : composed) append_utf8(out, c);
  return out;
}

}  // namespace cq::unicode
