#pragma once
// Agreement of a (quantized) model with the unquantized one: mean KL divergence of the
// next-token distributions and top-1 agreement, position by position.
#include <cstdint>
#include <span>
#include <vector>

#include "model/transformer.h"

namespace cq {

struct Agreement {
  double mean_kl = 0;         // mean over positions of KL(P_reference || P_candidate), nats
  double top1_agreement = 0;  // share of positions whose argmax agrees
  int64_t positions = 0;
};

Agreement compare_distributions(std::span<const float> reference_logits, std::span<const float> candidate_logits, int64_t vocab);

// Deterministic uniform token ids (for generated models without a tokenizer).
std::vector<int32_t> random_tokens(int64_t vocab, int64_t count, uint64_t seed);
// Logits of `windows` sequences of `seqlen` tokens, one forward per sequence.
std::vector<float> run_logits(Transformer& model, std::span<const int32_t> tokens, int64_t windows, int64_t seqlen);
double perplexity_of_logits(std::span<const float> logits, std::span<const int32_t> tokens, int64_t windows, int64_t seqlen,
                            int64_t vocab);

}  // namespace cq
