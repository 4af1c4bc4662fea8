#include "eval/model_samples.h"

#include "eval/generation.h"
#include "util/error.h"
#include "util/parallel.h"

namespace cq {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

uint64_t sampled_window_seed(uint64_t seed, SampleStream stream, int64_t index) {
  return splitmix64(splitmix64(splitmix64(seed) ^ static_cast<uint64_t>(stream)) ^ static_cast<uint64_t>(index));
}

std::vector<int32_t> sample_token_windows(Transformer& model, int64_t windows, int64_t seqlen, uint64_t seed,
                                          SampleStream stream) {
  if (windows < 1 || seqlen < 2) fail("sampled tokens: need at least one window of two tokens (got {} x {})", windows, seqlen);
  const auto vocab = static_cast<uint64_t>(model.config().vocab_size);
  const parallel::Share share = parallel::my_share(windows);
  std::vector<double> mine;  // token ids as doubles: exact, and what parallel::gather carries
  mine.reserve(static_cast<size_t>(share.size() * seqlen));
  for (int64_t w = share.begin; w < share.end; ++w) {
    const uint64_t window_seed = sampled_window_seed(seed, stream, w);
    const auto first = static_cast<int32_t>(splitmix64(window_seed) % vocab);
    GenerationOptions options;
    options.new_tokens = seqlen - 1;
    options.temperature = 1.0;
    options.seed = window_seed;
    const std::vector<int32_t> continuation = generate_tokens(model, {first}, options);
    if (static_cast<int64_t>(continuation.size()) != seqlen - 1)
      fail("sampled tokens: the model stopped after {} of {} tokens (its positions end)", continuation.size() + 1, seqlen);
    mine.push_back(first);
    for (int32_t token : continuation) mine.push_back(token);
  }
  const std::vector<double> all = parallel::gather(mine);
  std::vector<int32_t> tokens(all.size());
  for (size_t i = 0; i < all.size(); ++i) tokens[i] = static_cast<int32_t>(all[i]);
  return tokens;
}

}  // namespace cq
