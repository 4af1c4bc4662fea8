#include "eval/generation.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "util/cancel.h"

namespace cq {

std::vector<int32_t> generate_tokens(Transformer& model, const std::vector<int32_t>& prompt, const GenerationOptions& options) {
  const int64_t vocab = model.config().vocab_size;
  const int64_t capacity = std::min<int64_t>(static_cast<int64_t>(prompt.size()) + options.new_tokens,
                                             model.config().positions == PositionKind::Learned
                                                 ? model.config().max_position_embeddings
                                                 : std::numeric_limits<int32_t>::max());
  KVCache cache = model.make_cache(1, capacity);
  std::vector<float> logits(static_cast<size_t>(vocab));
  std::mt19937_64 random(options.seed);
  std::vector<int32_t> generated;
  std::vector<int32_t> step = prompt;
  while (static_cast<int64_t>(generated.size()) < options.new_tokens && cache.length + static_cast<int64_t>(step.size()) <= capacity) {
    check_cancelled();
    model.forward(step, 1, static_cast<int64_t>(step.size()), logits, &cache, true);
    int32_t next = 0;
    if (options.temperature == 0) {
      next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    } else {
      const float max_logit = *std::max_element(logits.begin(), logits.end());
      std::vector<double> weights(logits.size());
      for (size_t j = 0; j < logits.size(); ++j) weights[j] = std::exp((logits[j] - max_logit) / options.temperature);
      next = static_cast<int32_t>(std::discrete_distribution<size_t>(weights.begin(), weights.end())(random));
    }
    generated.push_back(next);
    if (next == options.eos_id) break;
    step = {next};
  }
  return generated;
}

}  // namespace cq
