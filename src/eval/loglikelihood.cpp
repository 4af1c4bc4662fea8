#include "eval/loglikelihood.h"

#include <algorithm>
#include <cmath>

#include "eval/eval_data.h"
#include "util/error.h"

namespace cq {

EncodedRequest encode_request(const Tokenizer& tokenizer, std::string_view context, std::string_view continuation,
                              bool add_bos) {
  EncodedRequest out;
  if (context.empty()) {
    const int32_t prefix = tokenizer.bos_id() >= 0 ? tokenizer.bos_id() : tokenizer.eos_id();
    if (prefix < 0) fail("the tokenizer has neither BOS nor EOS to stand for an empty context");
    out.context = {prefix};
    out.continuation = tokenizer.encode(continuation, false);
    return out;
  }
  const auto encode = [&](std::string_view text) {
    std::vector<int32_t> ids = tokenizer.encode(text, false);
    if (add_bos && tokenizer.bos_id() >= 0) ids.insert(ids.begin(), tokenizer.bos_id());
    return ids;
  };
  const std::string trimmed = python_rstrip(context);
  const std::string moved = std::string(context.substr(trimmed.size())) + std::string(continuation);
  const std::vector<int32_t> whole = encode(trimmed + moved);
  out.context = encode(trimmed);
  if (out.context.size() <= whole.size()) out.continuation.assign(whole.begin() + out.context.size(), whole.end());
  return out;
}

double token_logprob(const float* logits, int64_t vocab, int32_t target, bool* is_argmax) {
  int64_t best = 0;
  for (int64_t v = 1; v < vocab; ++v)
    if (logits[v] > logits[best]) best = v;
  const double max = logits[best];
  double sum = 0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(logits[v]) - max);
  if (is_argmax) *is_argmax = best == target;
  return static_cast<double>(logits[target]) - max - std::log(sum);
}

LoglikelihoodEngine::LoglikelihoodEngine(Transformer& model, const Tokenizer& tokenizer, LoglikelihoodOptions options)
    : model_(model), tokenizer_(tokenizer), options_(options) {
  if (options_.max_length <= 0) options_.max_length = model_.config().max_position_embeddings;
  options_.max_length = std::min<int64_t>(options_.max_length, model_.config().max_position_embeddings);
}

std::vector<RequestScore> LoglikelihoodEngine::score(std::string_view context, std::span<const std::string> continuations) {
  std::vector<EncodedRequest> requests;
  requests.reserve(continuations.size());
  for (const auto& continuation : continuations)
    requests.push_back(encode_request(tokenizer_, context, continuation, options_.add_bos));
  return score_encoded(requests);
}

std::vector<RequestScore> LoglikelihoodEngine::score_encoded(std::span<const EncodedRequest> requests) {
  stats_.requests += static_cast<int64_t>(requests.size());
  bool shareable = options_.shared_prefix && requests.size() > 1;
  for (const auto& request : requests) {
    const int64_t total = static_cast<int64_t>(request.context.size() + request.continuation.size());
    if (request.context != requests[0].context || request.continuation.empty() || total > options_.max_length + 1)
      shareable = false;
  }
  if (shareable) return score_shared(requests);
  std::vector<RequestScore> scores;
  for (const auto& request : requests) scores.push_back(score_alone(request));
  return scores;
}

RequestScore LoglikelihoodEngine::score_alone(const EncodedRequest& request) {
  RequestScore score;
  score.context_tokens = static_cast<int64_t>(request.context.size());
  score.continuation = request.continuation;
  score.is_greedy = true;
  if (request.continuation.empty()) return score;
  // inp = (context + continuation)[-(max_length + 1):][:-1]
  std::vector<int32_t> all = request.context;
  all.insert(all.end(), request.continuation.begin(), request.continuation.end());
  const int64_t start = std::max<int64_t>(0, static_cast<int64_t>(all.size()) - (options_.max_length + 1));
  const std::vector<int32_t> input(all.begin() + start, all.end() - 1);
  const int64_t length = static_cast<int64_t>(input.size());
  const int64_t vocab = model_.config().vocab_size;
  const int64_t k = static_cast<int64_t>(request.continuation.size());
  if (k > length) fail("a continuation of {} tokens does not fit the window of {}", k, options_.max_length);
  logits_.resize(static_cast<size_t>(length * vocab));
  model_.forward(input, 1, length, logits_);
  ++stats_.forward_calls;
  stats_.positions += length;
  stats_.request_tokens += length;
  for (int64_t j = 0; j < k; ++j) {
    bool argmax = false;
    score.loglikelihood += token_logprob(&logits_[(length - k + j) * vocab], vocab, request.continuation[j], &argmax);
    score.is_greedy = score.is_greedy && argmax;
  }
  return score;
}

std::vector<RequestScore> LoglikelihoodEngine::score_shared(std::span<const EncodedRequest> requests) {
  const std::vector<int32_t>& context = requests[0].context;
  const int64_t n = static_cast<int64_t>(requests.size());
  const int64_t c = static_cast<int64_t>(context.size());
  const int64_t vocab = model_.config().vocab_size;
  int64_t max_k = 0;
  for (const auto& request : requests) max_k = std::max<int64_t>(max_k, request.continuation.size());

  // Context minus its last token into a batch-1 cache, then one copy of it per request.
  const int64_t prefix = c - 1;
  KVCache cache = model_.make_cache(n, prefix + max_k);
  if (prefix > 0) {
    KVCache single = model_.make_cache(1, prefix);
    logits_.resize(static_cast<size_t>(vocab));
    model_.forward(std::span<const int32_t>(context.data(), prefix), 1, prefix, logits_, &single, true);
    ++stats_.forward_calls;
    stats_.positions += prefix;
    const size_t row = static_cast<size_t>(prefix * single.kv_width);
    const size_t stride = static_cast<size_t>(cache.capacity * cache.kv_width);
    for (size_t layer = 0; layer < cache.keys.size(); ++layer)
      for (int64_t b = 0; b < n; ++b) {
        std::copy_n(single.keys[layer].begin(), row, cache.keys[layer].begin() + b * stride);
        std::copy_n(single.values[layer].begin(), row, cache.values[layer].begin() + b * stride);
      }
    cache.length = prefix;
  }
  // Row i: the context's last token, then the continuation without its last token, padded at
  // the end (causal attention: padding never reaches the positions that are read).
  std::vector<int32_t> tokens(static_cast<size_t>(n * max_k));
  for (int64_t i = 0; i < n; ++i) {
    const auto& continuation = requests[i].continuation;
    int32_t* row = &tokens[i * max_k];
    row[0] = context.back();
    for (int64_t j = 1; j < max_k; ++j)
      row[j] = j - 1 < static_cast<int64_t>(continuation.size()) ? continuation[j - 1] : continuation.back();
  }
  logits_.resize(static_cast<size_t>(n * max_k * vocab));
  model_.forward(tokens, n, max_k, logits_, &cache);
  ++stats_.forward_calls;
  stats_.positions += n * max_k;

  std::vector<RequestScore> scores(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    RequestScore& score = scores[i];
    score.context_tokens = c;
    score.continuation = requests[i].continuation;
    score.is_greedy = true;
    const int64_t k = static_cast<int64_t>(score.continuation.size());
    stats_.request_tokens += c + k - 1;
    for (int64_t j = 0; j < k; ++j) {
      bool argmax = false;
      score.loglikelihood += token_logprob(&logits_[(i * max_k + j) * vocab], vocab, score.continuation[j], &argmax);
      score.is_greedy = score.is_greedy && argmax;
    }
  }
  return scores;
}

}  // namespace cq
