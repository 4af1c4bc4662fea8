#pragma once
// The perplexity protocol of SPEC.md: the whole text tokenized once (BOS as the tokenizer
// adds it), non-overlapping windows of seqlen tokens, remainder dropped, exp of the mean
// of the windows' mean token NLL.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "model/transformer.h"

namespace cq {

struct PerplexityOptions {
  int64_t seqlen = 2048;
  int64_t max_windows = 0;  // 0: all
  int64_t batch = 1;        // windows per forward
  bool show_progress = true;
  std::string progress_label = "ppl";  // the job the progress bar names (cq kernel: "kernel")
};

struct PerplexityResult {
  double perplexity = 0;
  double mean_nll = 0;
  int64_t windows = 0;
  int64_t tokens_scored = 0;   // windows * (seqlen - 1)
  int64_t tokens_total = 0;    // tokens in the text
  double seconds = 0;
  std::vector<double> window_nll;  // mean NLL of each window
};

PerplexityResult evaluate_perplexity(Transformer& model, std::span<const int32_t> tokens, const PerplexityOptions& options);

// Mean NLL of predicting tokens[1..n) from logits[0..n-1) of one sequence (double sums).
double mean_next_token_nll(const float* logits, std::span<const int32_t> tokens, int64_t vocab);

}  // namespace cq
