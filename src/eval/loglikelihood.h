#pragma once
// The log-likelihood engine of lm-evaluation-harness v0.4.x (docs/EVAL.md §0.2-0.3): a
// (context, continuation) request is tokenized jointly, left-truncated to the model window,
// and scored as the summed log-probability of the continuation tokens plus whether each was
// the greedy choice. The choices of one question share their context: it is run once into a
// KV cache, copied to one row per choice, and only the continuations are run, batched.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/transformer.h"
#include "tokenizer/tokenizer.h"

namespace cq {

struct EncodedRequest {
  std::vector<int32_t> context, continuation;
};

// lm-eval's _encode_pair: trailing whitespace of the context moves into the continuation;
// the continuation tokens are those of encode(context + continuation) after the context's
// token count. An empty context becomes [BOS] (EOS without BOS). BOS is prepended to every
// encoding only with add_bos (lm-eval v0.4.x default: none).
EncodedRequest encode_request(const Tokenizer& tokenizer, std::string_view context, std::string_view continuation,
                              bool add_bos);

struct RequestScore {
  double loglikelihood = 0;  // sum of natural-log probabilities of the continuation tokens
  bool is_greedy = false;    // every continuation token was the argmax
  int64_t context_tokens = 0;
  std::vector<int32_t> continuation;  // continuation token ids
};

struct LoglikelihoodOptions {
  bool add_bos = false;
  int64_t max_length = 0;     // window (0: the model's max_position_embeddings)
  bool shared_prefix = true;  // false: every request is one full forward (batch 1)
};

struct EngineStats {
  int64_t requests = 0;
  int64_t forward_calls = 0;
  int64_t positions = 0;        // token positions run through the model (batch rows x length, padding included)
  int64_t request_tokens = 0;   // tokens of the scored inputs (context + continuation, after truncation)
  void reset() { *this = EngineStats(); }
};

class LoglikelihoodEngine {
 public:
  LoglikelihoodEngine(Transformer& model, const Tokenizer& tokenizer, LoglikelihoodOptions options);

  // Scores (context, continuation_i) for every i; the requests share one context string.
  std::vector<RequestScore> score(std::string_view context, std::span<const std::string> continuations);
  // Same on encoded requests; the shared-prefix path is taken when all contexts are equal
  // and no request needs truncation.
  std::vector<RequestScore> score_encoded(std::span<const EncodedRequest> requests);

  const LoglikelihoodOptions& options() const { return options_; }
  const EngineStats& stats() const { return stats_; }
  EngineStats& stats() { return stats_; }

 private:
  RequestScore score_alone(const EncodedRequest& request);
  std::vector<RequestScore> score_shared(std::span<const EncodedRequest> requests);

  Transformer& model_;
  const Tokenizer& tokenizer_;
  LoglikelihoodOptions options_;
  EngineStats stats_;
  std::vector<float> logits_;
};

// Log-probability of `target` under one row of logits (log_softmax in double) and whether it
// is the argmax (lowest index on ties).
double token_logprob(const float* logits, int64_t vocab, int32_t target, bool* is_argmax);

}  // namespace cq
