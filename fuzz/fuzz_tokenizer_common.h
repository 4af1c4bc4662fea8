#pragma once
// Loads the tokenizer of `dir`, encodes `text`, decodes the ids and a few arbitrary ids.
#include "fuzz_common.h"
#include "tokenizer/tokenizer.h"

namespace cq::fuzz {

inline void exercise_tokenizer(const std::filesystem::path& dir, std::string_view text) {
  expect_only_cq_errors([&] {
    const auto tokenizer = load_tokenizer(dir);
    (void)tokenizer->kind();
    const auto ids = tokenizer->encode(text, true);
    (void)tokenizer->decode(ids, true);
    (void)tokenizer->decode(ids, false);
    (void)tokenizer->encode(text, false);
    // Ids a user could type (cq tokenize --decode): derived from the text bytes, some out of range.
    std::vector<int32_t> arbitrary;
    const int64_t vocab = std::max<int64_t>(tokenizer->vocab_size(), 1);
    for (size_t i = 0; i < text.size() && i < 16; ++i)
      arbitrary.push_back(static_cast<int32_t>(static_cast<unsigned char>(text[i]) % (vocab + 2)) - 1);
    (void)tokenizer->decode(arbitrary, false);
  });
}

}  // namespace cq::fuzz
