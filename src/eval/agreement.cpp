#include "eval/agreement.h"

#include <algorithm>
#include <cmath>

#include "eval/perplexity.h"
#include "util/error.h"

namespace cq {

Agreement compare_distributions(std::span<const float> reference_logits, std::span<const float> candidate_logits, int64_t vocab) {
  if (reference_logits.size() != candidate_logits.size()) fail("compare_distributions: size mismatch");
  const auto positions = static_cast<int64_t>(reference_logits.size()) / vocab;
  double kl_sum = 0;
  int64_t agree = 0;
#pragma omp parallel for reduction(+ : kl_sum, agree) schedule(static)
  for (int64_t t = 0; t < positions; ++t) {
    const float* p = reference_logits.data() + t * vocab;
    const float* q = candidate_logits.data() + t * vocab;
    const int64_t p_arg = std::max_element(p, p + vocab) - p;
    const int64_t q_arg = std::max_element(q, q + vocab) - q;
    double p_sum = 0, q_sum = 0;
    for (int64_t j = 0; j < vocab; ++j) {
      p_sum += std::exp(static_cast<double>(p[j] - p[p_arg]));
      q_sum += std::exp(static_cast<double>(q[j] - q[q_arg]));
    }
    const double p_log_norm = p[p_arg] + std::log(p_sum);
    const double q_log_norm = q[q_arg] + std::log(q_sum);
    double kl = 0;
    for (int64_t j = 0; j < vocab; ++j) {
      const double log_p = p[j] - p_log_norm;
      const double log_q = q[j] - q_log_norm;
      kl += std::exp(log_p) * (log_p - log_q);
    }
    kl_sum += kl;
    agree += p_arg == q_arg ? 1 : 0;
  }
  Agreement result;
  result.positions = positions;
  result.mean_kl = positions > 0 ? kl_sum / static_cast<double>(positions) : 0.0;
  result.top1_agreement = positions > 0 ? static_cast<double>(agree) / static_cast<double>(positions) : 0.0;
  return result;
}

std::vector<int32_t> random_tokens(int64_t vocab, int64_t count, uint64_t seed) {
  std::vector<int32_t> tokens(static_cast<size_t>(count));
  uint64_t state = seed;
  for (auto& token : tokens) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;  // LCG, identical everywhere
    token = static_cast<int32_t>((state >> 33) % static_cast<uint64_t>(vocab));
  }
  return tokens;
}

std::vector<float> run_logits(Transformer& model, std::span<const int32_t> tokens, int64_t windows, int64_t seqlen) {
  const int64_t vocab = model.config().vocab_size;
  std::vector<float> logits(static_cast<size_t>(windows * seqlen * vocab));
  for (int64_t w = 0; w < windows; ++w)
    model.forward(tokens.subspan(static_cast<size_t>(w * seqlen), static_cast<size_t>(seqlen)), 1, seqlen,
                  std::span<float>(logits).subspan(static_cast<size_t>(w * seqlen * vocab), static_cast<size_t>(seqlen * vocab)));
  return logits;
}

double perplexity_of_logits(std::span<const float> logits, std::span<const int32_t> tokens, int64_t windows, int64_t seqlen,
                            int64_t vocab) {
  double sum = 0;
  for (int64_t w = 0; w < windows; ++w)
    sum += mean_next_token_nll(logits.data() + w * seqlen * vocab,
                               tokens.subspan(static_cast<size_t>(w * seqlen), static_cast<size_t>(seqlen)), vocab);
  return std::exp(sum / static_cast<double>(windows));
}

}  // namespace cq
