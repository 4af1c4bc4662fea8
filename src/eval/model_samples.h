#pragma once
// Token windows sampled from a model itself at temperature 1: the evaluation (and calibration)
// tokens of `cq sweep --sample-windows` for models without a tokenizer, such as the generated
// outlier model of `make run` (docs/SWEEP.md, "Tokens sampled from the model"). On its own
// samples the sampling model p scores, in expectation, its entropy H(p) per token; any other
// model q scores H(p) + KL(p‖q). So a quantized copy's perplexity above the FP32 row measures
// the damage of quantization, and log(ppl_q / ppl_fp32) estimates the mean KL in nats.
#include <cstdint>
#include <vector>

#include "model/transformer.h"

namespace cq {

// Independent streams of one seed: evaluation windows and calibration windows never share
// a window seed.
enum class SampleStream : uint64_t { Evaluation = 0, Calibration = 1 };

// The seed of window `index` of `stream` (SplitMix64 of seed, stream and index).
uint64_t sampled_window_seed(uint64_t seed, SampleStream stream, int64_t index);

// `windows` sequences of `seqlen` tokens, concatenated. Window w depends only on the model and
// sampled_window_seed(seed, stream, w): its first token is uniform over the vocabulary (the
// perplexity protocol never scores a window's first token), the other seqlen - 1 are
// generate_tokens at temperature 1 with that seed (what `cq generate --temperature 1` does).
// In an MPI job each rank samples its share of the windows and the shares are gathered: the
// same tokens as one process. seqlen must fit the model's positions (check_position_limit).
std::vector<int32_t> sample_token_windows(Transformer& model, int64_t windows, int64_t seqlen, uint64_t seed,
                                          SampleStream stream);

}  // namespace cq
