#pragma once
// GPT-2's reversible byte <-> character mapping ("bytes_to_unicode"): the printable
// Latin-1 bytes map to themselves, the other 68 to U+0100.. in byte order, so every byte
// string becomes a string of printable characters a BPE vocabulary can hold.
#include <cstdint>
#include <string>
#include <string_view>

namespace cq::byte_level {

// Appends the mapped characters of `bytes` (UTF-8) to `out`.
void append_encoded(std::string& out, std::string_view bytes);

// Appends the bytes a byte-level token stands for. Like the references, a token with a
// character outside the mapping (an added token such as "<|eot_id|>" is inside it, but
// not every added token is) contributes its own UTF-8 bytes unchanged.
void append_decoded(std::string& out, std::string_view token);

}  // namespace cq::byte_level
