#include "tokenizer/byte_level.h"

#include <array>

#include "tokenizer/unicode.h"

namespace cq::byte_level {
namespace {

struct ByteTables {
  std::array<std::string, 256> encoded;  // byte -> UTF-8 of its character
  std::array<int16_t, 512> byte_of;      // character (all < U+0200) -> byte, -1 if none

  ByteTables() {
    byte_of.fill(-1);
    char32_t next_unprintable = 0x100;
    for (int byte = 0; byte < 256; ++byte) {
      const bool printable = (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || byte >= 0xAE;
      const char32_t code_point = printable ? static_cast<char32_t>(byte) : next_unprintable++;
      unicode::append_utf8(encoded[static_cast<size_t>(byte)], code_point);
      byte_of[code_point] = static_cast<int16_t>(byte);
    }
  }
};

const ByteTables& tables() {
  static const ByteTables instance;
  return instance;
}

}  // namespace

void append_encoded(std::string& out, std::string_view bytes) {
  const ByteTables& t = tables();
  for (const char byte : bytes) out += t.encoded[static_cast<unsigned char>(byte)];
}

void append_decoded(std::string& out, std::string_view token) {
  const ByteTables& t = tables();
  const size_t start = out.size();
  for (size_t pos = 0; pos < token.size();) {
    const unicode::DecodedChar decoded = unicode::decode_utf8(token, pos);
    const int byte = decoded.code_point < t.byte_of.size() ? t.byte_of[decoded.code_point] : -1;
    if (byte < 0) {
      out.resize(start);
      out += token;
      return;
    }
    out += static_cast<char>(byte);
    pos += decoded.length;
  }
}

}  // namespace cq::byte_level
