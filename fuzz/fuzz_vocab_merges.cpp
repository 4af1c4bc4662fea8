// Fuzz target: GPT-2 style vocab.json + merges.txt (+ tokenizer_config.json), then encode/decode.
// Input: text NUL vocab.json NUL merges.txt NUL tokenizer_config.json (empty config: not written).
#include "fuzz_tokenizer_common.h"

CQ_FUZZ_TARGET(vocab_merges) {
  const auto parts = split(input, 4);
  const auto dir = fresh_dir();
  write_file(dir / "vocab.json", parts[1]);
  write_file(dir / "merges.txt", parts[2]);
  if (!parts[3].empty()) write_file(dir / "tokenizer_config.json", parts[3]);
  exercise_tokenizer(dir, parts[0]);
}
