#include "eval/loglikelihood.h"
#include "model/position_limit.h"

#include <algorithm>
#include <cmath>

#include "eval/eval_data.h"
#include "eval/shard_kernel_stats.h"
#include "kernels/vector_math.h"
#include "util/error.h"
#include "util/parallel.h"

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
  const double sum = kernels::sum_exp_shifted(logits, vocab, logits[best]);
  if (is_argmax) *is_argmax = best == target;
  return static_cast<double>(logits[target]) - max - std::log(sum);
}

LoglikelihoodEngine::LoglikelihoodEngine(Transformer& model, const Tokenizer& tokenizer, LoglikelihoodOptions options)
    : model_(model), tokenizer_(tokenizer), options_(options) {
  if (options_.max_length <= 0) options_.max_length = model_.config().max_position_embeddings;
  // Past the limit: learned positions are refused, rotary ones computed (as lm-eval's
  // max_length allows) with one warning (model/position_limit.h).
  check_position_limit(model_.config(), model_.directory().string(), options_.max_length,
                       fmt::format("max_length {}", options_.max_length));
}

// One question laid out for a packed forward: its tokens as segments (parents counted from
// the question's first segment), the rows whose logits are read, and for each request and
// continuation token the index of the logit row that predicts it.
struct LoglikelihoodEngine::PackedQuestion {
  std::vector<int32_t> tokens;
  std::vector<PackedSegment> segments;
  std::vector<int64_t> logit_rows;
  std::vector<std::vector<int64_t>> request_logits;
  int64_t request_tokens = 0;
};

EncodedQuestion LoglikelihoodEngine::encode(std::string_view context, std::span<const std::string> continuations) const {
  EncodedQuestion question;
  question.reserve(continuations.size());
  for (const auto& continuation : continuations)
    question.push_back(encode_request(tokenizer_, context, continuation, options_.add_bos));
  return question;
}

std::vector<RequestScore> LoglikelihoodEngine::score(std::string_view context, std::span<const std::string> continuations) {
  return score_encoded(encode(context, continuations));
}

std::vector<RequestScore> LoglikelihoodEngine::score_encoded(std::span<const EncodedRequest> requests) {
  const EncodedQuestion question[] = {EncodedQuestion(requests.begin(), requests.end())};
  return std::move(score_questions(question).front());
}

std::vector<std::vector<RequestScore>> LoglikelihoodEngine::score_questions(std::span<const EncodedQuestion> questions,
                                                                            const std::function<void(int64_t)>& on_scored) {
  std::vector<std::vector<RequestScore>> scores(questions.size());
  for (const auto& question : questions) stats_.requests += static_cast<int64_t>(question.size());
  // The forwards as runs of questions [forward_ends[f-1], forward_ends[f]): one question each
  // per request; packed, greedily in order, a question joins the current forward while the
  // positions fit.
  std::vector<size_t> forward_ends;
  if (options_.mode == ScoringMode::PerRequest) {
    for (size_t q = 0; q < questions.size(); ++q) forward_ends.push_back(q + 1);
  } else {
    int64_t batch_tokens = 0;
    size_t batch_first = 0;
    for (size_t q = 0; q < questions.size(); ++q) {
      const auto tokens = static_cast<int64_t>(pack(questions[q]).tokens.size());
      if (q > batch_first && batch_tokens + tokens > options_.packed_tokens) {
        forward_ends.push_back(q);
        batch_first = q;
        batch_tokens = 0;
      }
      batch_tokens += tokens;
    }
    if (!questions.empty()) forward_ends.push_back(questions.size());
  }
  // In an MPI job each rank runs a contiguous share of these forwards (the same forwards as
  // one process runs, so the same logits); the scores are gathered in question order.
  const parallel::Share mine = parallel::my_share(static_cast<int64_t>(forward_ends.size()));
  const auto forward_begin = [&](int64_t f) { return f == 0 ? size_t{0} : forward_ends[static_cast<size_t>(f - 1)]; };
  const size_t my_first = mine.size() > 0 ? forward_begin(mine.begin) : 0;
  const size_t my_end = mine.size() > 0 ? forward_ends[static_cast<size_t>(mine.end - 1)] : 0;
  const EngineStats before = stats_;
  ShardedKernelStats kernel_stats(model_);
  for (int64_t f = mine.begin; f < mine.end; ++f) {
    const size_t first = forward_begin(f), end = forward_ends[static_cast<size_t>(f)];
    if (options_.mode == ScoringMode::PerRequest) {
      for (const auto& request : questions[first]) scores[first].push_back(score_alone(request));
    } else {
      std::vector<PackedQuestion> batch;
      for (size_t q = first; q < end; ++q) batch.push_back(pack(questions[q]));
      score_packed(batch, questions.subspan(first, end - first), std::span(scores).subspan(first, end - first));
    }
    if (on_scored) on_scored(static_cast<int64_t>(end - first));
  }
  if (parallel::ranks() > 1) gather_scores(questions, my_first, my_end, before, scores);
  kernel_stats.sum_over_ranks();
  return scores;
}

void LoglikelihoodEngine::gather_scores(std::span<const EncodedQuestion> questions, size_t my_first, size_t my_end,
                                        const EngineStats& before, std::vector<std::vector<RequestScore>>& scores) {
  std::vector<double> mine;  // per request of my questions: log-likelihood, greedy (0/1)
  for (size_t q = my_first; q < my_end; ++q)
    for (const RequestScore& score : scores[q]) mine.push_back(score.loglikelihood), mine.push_back(score.is_greedy ? 1 : 0);
  const std::vector<double> all = parallel::gather(mine);
  size_t next = 0;
  for (size_t q = 0; q < questions.size(); ++q) {
    scores[q].clear();
    for (const EncodedRequest& request : questions[q]) {
      RequestScore score;
      score.context_tokens = static_cast<int64_t>(request.context.size());
      score.continuation = request.continuation;
      if (next + 2 > all.size()) fail("internal error: {} request scores gathered from the ranks", all.size() / 2);
      score.loglikelihood = all[next];
      score.is_greedy = all[next + 1] != 0;
      next += 2;
      scores[q].push_back(std::move(score));
    }
  }
  if (next != all.size()) fail("internal error: {} request scores gathered from the ranks for {}", all.size() / 2, next / 2);
  const EngineStats mine_stats = stats_ - before;
  int64_t counts[] = {mine_stats.forward_calls, mine_stats.positions, mine_stats.request_tokens};
  parallel::sum(counts);
  stats_.forward_calls = before.forward_calls + counts[0];
  stats_.positions = before.positions + counts[1];
  stats_.request_tokens = before.request_tokens + counts[2];
}

std::vector<int32_t> LoglikelihoodEngine::truncated_input(const EncodedRequest& request) const {
  std::vector<int32_t> all = request.context;
  all.insert(all.end(), request.continuation.begin(), request.continuation.end());
  const int64_t start = std::max<int64_t>(0, static_cast<int64_t>(all.size()) - (options_.max_length + 1));
  std::vector<int32_t> input(all.begin() + start, all.end() - 1);
  const auto k = static_cast<int64_t>(request.continuation.size());
  if (k > static_cast<int64_t>(input.size()))
    fail("a continuation of {} tokens does not fit the window of {}", k, options_.max_length);
  return input;
}

LoglikelihoodEngine::PackedQuestion LoglikelihoodEngine::pack(const EncodedQuestion& question) const {
  PackedQuestion packed;
  packed.request_logits.resize(question.size());
  // Shared: the context once (its last row predicts every first continuation token), then
  // each continuation but its last token as a child segment. Requests that need truncation
  // or differ in context make every request a sequence of its own.
  bool shared = options_.share_context && question.size() > 1 && !question[0].context.empty();
  for (const auto& request : question)
    if (request.context != question[0].context ||
        static_cast<int64_t>(request.context.size() + request.continuation.size()) > options_.max_length + 1)
      shared = false;
  const auto add_logit_row = [&](size_t request, int64_t row) {
    packed.logit_rows.push_back(row);
    packed.request_logits[request].push_back(static_cast<int64_t>(packed.logit_rows.size()) - 1);
  };
  if (shared) {
    const std::vector<int32_t>& context = question[0].context;
    const auto c = static_cast<int64_t>(context.size());
    packed.tokens = context;
    packed.segments.push_back({c, -1});
    packed.logit_rows.push_back(c - 1);
    for (size_t i = 0; i < question.size(); ++i) {
      const std::vector<int32_t>& continuation = question[i].continuation;
      const auto k = static_cast<int64_t>(continuation.size());
      if (k == 0) continue;
      packed.request_logits[i].push_back(0);
      packed.request_tokens += c + k - 1;
      if (k == 1) continue;
      const auto start = static_cast<int64_t>(packed.tokens.size());
      packed.tokens.insert(packed.tokens.end(), continuation.begin(), continuation.end() - 1);
      packed.segments.push_back({k - 1, 0});
      for (int64_t j = 0; j + 1 < k; ++j) add_logit_row(i, start + j);
    }
    return packed;
  }
  for (size_t i = 0; i < question.size(); ++i) {
    const auto k = static_cast<int64_t>(question[i].continuation.size());
    if (k == 0) continue;
    const std::vector<int32_t> input = truncated_input(question[i]);
    const auto length = static_cast<int64_t>(input.size());
    const auto start = static_cast<int64_t>(packed.tokens.size());
    packed.tokens.insert(packed.tokens.end(), input.begin(), input.end());
    packed.segments.push_back({length, -1});
    packed.request_tokens += length;
    for (int64_t j = 0; j < k; ++j) add_logit_row(i, start + length - k + j);
  }
  return packed;
}

void LoglikelihoodEngine::score_packed(std::span<const PackedQuestion> batch, std::span<const EncodedQuestion> questions,
                                       std::span<std::vector<RequestScore>> scores) {
  std::vector<int32_t> tokens;
  std::vector<PackedSegment> segments;
  std::vector<int64_t> logit_rows, logit_offsets;
  for (const PackedQuestion& question : batch) {
    const auto row_offset = static_cast<int64_t>(tokens.size());
    const auto segment_offset = static_cast<int64_t>(segments.size());
    logit_offsets.push_back(static_cast<int64_t>(logit_rows.size()));
    tokens.insert(tokens.end(), question.tokens.begin(), question.tokens.end());
    for (PackedSegment segment : question.segments) {
      if (segment.parent >= 0) segment.parent += segment_offset;
      segments.push_back(segment);
    }
    for (int64_t row : question.logit_rows) logit_rows.push_back(row_offset + row);
    stats_.request_tokens += question.request_tokens;
  }
  const int64_t vocab = model_.config().vocab_size;
  if (!tokens.empty()) {
    logits_.resize(logit_rows.size() * static_cast<size_t>(vocab));
    model_.forward_packed(tokens, segments, logit_rows, logits_);
    ++stats_.forward_calls;
    stats_.positions += static_cast<int64_t>(tokens.size());
  }
  for (size_t q = 0; q < batch.size(); ++q)
    for (size_t i = 0; i < questions[q].size(); ++i) {
      const EncodedRequest& request = questions[q][i];
      RequestScore score;
      score.context_tokens = static_cast<int64_t>(request.context.size());
      score.continuation = request.continuation;
      score.is_greedy = true;
      const std::vector<int64_t>& rows = batch[q].request_logits[i];
      for (size_t j = 0; j < rows.size(); ++j) {
        bool argmax = false;
        const float* row = &logits_[static_cast<size_t>((logit_offsets[q] + rows[j]) * vocab)];
        score.loglikelihood += token_logprob(row, vocab, request.continuation[j], &argmax);
        score.is_greedy = score.is_greedy && argmax;
      }
      scores[q].push_back(std::move(score));
    }
}

RequestScore LoglikelihoodEngine::score_alone(const EncodedRequest& request) {
  RequestScore score;
  score.context_tokens = static_cast<int64_t>(request.context.size());
  score.continuation = request.continuation;
  score.is_greedy = true;
  if (request.continuation.empty()) return score;
  const std::vector<int32_t> input = truncated_input(request);
  const auto length = static_cast<int64_t>(input.size());
  const int64_t vocab = model_.config().vocab_size;
  const auto k = static_cast<int64_t>(request.continuation.size());
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

}  // namespace cq
