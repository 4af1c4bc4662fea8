#pragma once
// Continuing a prompt with a KV cache: greedy (temperature 0: argmax, lowest index on ties)
// or sampled (softmax at the temperature, std::mt19937_64 seeded). `cq generate` and the
// Python module call it, so both give the same tokens.
#include <cstdint>
#include <vector>

#include "model/transformer.h"

namespace cq {

struct GenerationOptions {
  int64_t new_tokens = 64;
  double temperature = 0.0;  // 0: greedy
  uint64_t seed = 0;
  int32_t eos_id = -1;       // generation stops after this token (< 0: never)
};

// The generated ids (the prompt not included), at most new_tokens, fewer where the model's
// learned positions end or EOS came. Checks cancellation (util/cancel.h) once per token.
std::vector<int32_t> generate_tokens(Transformer& model, const std::vector<int32_t>& prompt, const GenerationOptions& options);

}  // namespace cq
