// Fuzz target: tokenizer.json (+ tokenizer_config.json), then encode/decode.
// Input: tokenizer.json NUL tokenizer_config.json NUL text (an empty config is not written).
#include "fuzz_tokenizer_common.h"

CQ_FUZZ_TARGET(tokenizer_json) {
  const auto parts = split(input, 3);
  const auto dir = fresh_dir();
  write_file(dir / "tokenizer.json", parts[0]);
  if (!parts[1].empty()) write_file(dir / "tokenizer_config.json", parts[1]);
  exercise_tokenizer(dir, parts[2]);
}
