// Fuzz target: SentencePiece tokenizer.model (protobuf, parsed by libsentencepiece), then
// encode/decode. Input: text NUL tokenizer.model-bytes.
#include "fuzz_tokenizer_common.h"

CQ_FUZZ_TARGET(sentencepiece) {
  const auto parts = split(input, 2);
  const auto dir = fresh_dir();
  write_file(dir / "tokenizer.model", parts[1]);
  exercise_tokenizer(dir, parts[0]);
}
