#pragma once
// Resource limits on what a user's file may claim (docs/ROBUSTNESS.md "Resource limits"):
// beyond them the input is refused early with a message naming the file, before memory is
// sized from it. The safetensors header limits live in io/safetensors.h.
#include <cstdint>

namespace cq {

// Files read whole into memory. config.json, the safetensors index, tokenizer files
// (tokenizer.json, vocab.json, merges.txt, tokenizer.model, tokenizer_config.json): the
// largest real ones are ~35 MB.
inline constexpr int64_t kMaxConfigFileBytes = int64_t{64} << 20;
// Text read whole: texts to tokenize (--text, --calib), evaluation CSV and label files.
inline constexpr int64_t kMaxTextFileBytes = int64_t{1} << 30;
// One record of a JSONL file (streamed: only the current line is held in memory).
inline constexpr int64_t kMaxJsonlLineBytes = int64_t{16} << 20;

// Token ids, and a config's vocab_size, must be below this (2^24; the largest real
// vocabularies have ~2^18 entries): tables are sized by the largest id, so a file claiming
// id 10^9 is refused instead of allocating gigabytes.
inline constexpr int64_t kMaxTokenIds = int64_t{1} << 24;

}  // namespace cq
