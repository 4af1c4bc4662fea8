#include "eval/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "eval/shard_kernel_stats.h"
#include "kernels/vector_math.h"
#include "util/error.h"
#include "util/parallel.h"
#include "util/progress.h"

namespace cq {

double mean_next_token_nll(const float* logits, std::span<const int32_t> tokens, int64_t vocab) {
  const auto n = static_cast<int64_t>(tokens.size());
  double total = 0;
#pragma omp parallel for reduction(+ : total) schedule(static) if (n * vocab > (int64_t{1} << 18))
  for (int64_t t = 0; t < n - 1; ++t) {
    const float* row = logits + t * vocab;
    const float max_logit = *std::max_element(row, row + vocab);
    const double sum = kernels::sum_exp_shifted(row, vocab, max_logit);
    const double log_prob = static_cast<double>(row[tokens[static_cast<size_t>(t + 1)]] - max_logit) - std::log(sum);
    total -= log_prob;
  }
  return total / static_cast<double>(n - 1);
}

PerplexityResult evaluate_perplexity(Transformer& model, std::span<const int32_t> tokens, const PerplexityOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const int64_t seqlen = options.seqlen;
  if (seqlen < 2) fail("--seqlen must be at least 2 (got {})", seqlen);
  const int64_t vocab = model.config().vocab_size;
  PerplexityResult result;
  result.tokens_total = static_cast<int64_t>(tokens.size());
  int64_t windows = result.tokens_total / seqlen;
  if (options.max_windows > 0) windows = std::min(windows, options.max_windows);
  if (windows == 0) fail("the text has {} tokens, fewer than one window of {}", result.tokens_total, seqlen);
  const int64_t batch = std::max<int64_t>(1, std::min(options.batch, windows));
  // In an MPI job each rank runs a contiguous share of the forwards (the same batches as one
  // process runs); the windows' NLL are gathered in window order and summed below in that
  // order, the kernel counts summed: the same numbers for any number of ranks.
  const parallel::Share mine = parallel::my_share((windows + batch - 1) / batch);
  const int64_t my_first = mine.begin * batch, my_end = std::min(windows, mine.end * batch);
  ShardedKernelStats kernel_stats(model);
  std::vector<float> logits(static_cast<size_t>(batch * seqlen * vocab));
  std::vector<double> my_nll;
  ProgressBar progress(options.progress_label, std::max<int64_t>(0, my_end - my_first), "windows");
  for (int64_t first = my_first; first < my_end; first += batch) {
    const int64_t count = std::min(batch, windows - first);
    const auto window_tokens = tokens.subspan(static_cast<size_t>(first * seqlen), static_cast<size_t>(count * seqlen));
    model.forward(window_tokens, count, seqlen, logits);
    for (int64_t b = 0; b < count; ++b) {
      const double nll = mean_next_token_nll(logits.data() + b * seqlen * vocab,
                                             window_tokens.subspan(static_cast<size_t>(b * seqlen), static_cast<size_t>(seqlen)), vocab);
      if (!std::isfinite(nll)) fail("window {} has a non-finite NLL ({}): the model produced NaN/Inf logits", first + b, nll);
      my_nll.push_back(nll);
    }
    if (options.show_progress) progress.advance(count);
  }
  progress.finish();
  result.window_nll = parallel::gather(my_nll);
  kernel_stats.sum_over_ranks();
  double sum = 0;
  for (double nll : result.window_nll) sum += nll;
  result.windows = windows;
  result.mean_nll = sum / static_cast<double>(windows);
  result.perplexity = std::exp(result.mean_nll);
  result.tokens_scored = windows * (seqlen - 1);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace cq
