#pragma once
// The log-likelihood engine of lm-evaluation-harness v0.4.x (docs/EVAL.md §0.2-0.3): a
// (context, continuation) request is tokenized jointly, left-truncated to the model window,
// and scored as the summed log-probability of the continuation tokens plus whether each was
// the greedy choice. Questions are packed: one forward runs several questions, each as a tree
// (the context once, then every continuation attending to it; docs/EVAL.md "Engine").
#include <cstdint>
#include <functional>
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

enum class ScoringMode {
  Packed,      // whole questions packed into few forward passes (tree attention, no padding)
  PerRequest,  // one full forward per request, as lm-eval computes it
};

struct LoglikelihoodOptions {
  bool add_bos = false;
  int64_t max_length = 0;  // window (0: the model's max_position_embeddings)
  ScoringMode mode = ScoringMode::Packed;
  // Packed: token positions per forward; questions are added while they fit (a question
  // larger than this runs alone). Logits take packed_tokens x vocab floats at most.
  int64_t packed_tokens = 2048;
  // Packed: the choices of a question share one run of the context (a tree: context, then
  // each continuation attending to it). false: every request is a sequence of its own, its
  // own quantization window, as activation scales that depend on other tokens need
  // (dynamic CrossQuant's column maxima, per-tensor); the numbers then equal PerRequest.
  bool share_context = true;
};

struct EngineStats {
  int64_t requests = 0;
  int64_t forward_calls = 0;
  int64_t positions = 0;        // token positions run through the model
  int64_t request_tokens = 0;   // tokens of the scored inputs (context + continuation, after truncation)
  void reset() { *this = EngineStats(); }
  EngineStats operator-(const EngineStats& before) const {
    return {requests - before.requests, forward_calls - before.forward_calls, positions - before.positions,
            request_tokens - before.request_tokens};
  }
};

// The requests of one question: (context, continuation_i) for every choice i.
using EncodedQuestion = std::vector<EncodedRequest>;

class LoglikelihoodEngine {
 public:
  LoglikelihoodEngine(Transformer& model, const Tokenizer& tokenizer, LoglikelihoodOptions options);

  // Encodes (context, continuation_i) for every i (encode_request with the engine's add_bos).
  EncodedQuestion encode(std::string_view context, std::span<const std::string> continuations) const;
  // Scores (context, continuation_i) for every i; the requests share one context string.
  std::vector<RequestScore> score(std::string_view context, std::span<const std::string> continuations);
  // Scores one encoded question.
  std::vector<RequestScore> score_encoded(std::span<const EncodedRequest> requests);
  // Scores many questions, packing as many as fit into each forward; `on_scored(n)` is
  // called after each forward with the number of questions it completed.
  std::vector<std::vector<RequestScore>> score_questions(std::span<const EncodedQuestion> questions,
                                                         const std::function<void(int64_t)>& on_scored = {});

  const LoglikelihoodOptions& options() const { return options_; }
  const EngineStats& stats() const { return stats_; }
  EngineStats& stats() { return stats_; }

 private:
  struct PackedQuestion;
  PackedQuestion pack(const EncodedQuestion& question) const;
  void score_packed(std::span<const PackedQuestion> batch, std::span<const EncodedQuestion> questions,
                    std::span<std::vector<RequestScore>> scores);
  RequestScore score_alone(const EncodedRequest& request);
  // MPI job: every rank's scores of its questions [my_first, my_end) to every rank, in
  // question order, and the forward counts summed (util/parallel.h).
  void gather_scores(std::span<const EncodedQuestion> questions, size_t my_first, size_t my_end, const EngineStats& before,
                     std::vector<std::vector<RequestScore>>& scores);
  // The scored input of a request: inp = (context + continuation)[-(max_length + 1):][:-1].
  std::vector<int32_t> truncated_input(const EncodedRequest& request) const;

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
