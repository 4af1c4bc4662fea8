#pragma once
// Sequences longer than max_position_embeddings. Learned positions (OPT) have no embedding
// there: refused. Rotary positions (LLaMA) are defined at any position, as Hugging Face
// computes them, but the model never saw them in training: the run goes on, with one warning
// line on stderr per process (not per window or per configuration).
#include <cstdint>
#include <string>

#include "model/config.h"

namespace cq {

// `positions`: the longest sequence the run asks for; `request` says what asked for it
// ("--seqlen 4096"), `model` names the model (its directory). Throws cq::Error for learned
// positions past the limit; warns once for rotary ones.
void check_position_limit(const ModelConfig& config, const std::string& model, int64_t positions,
                          const std::string& request);

}  // namespace cq
