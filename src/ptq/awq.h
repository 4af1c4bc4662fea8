#pragma once
// AWQ (Lin et al. 2024), as the authors' llm-awq `auto_scale` / `auto_clip` compute it.
//
// Per block, with the inputs of the unquantized block on the calibration windows:
//  1. Scale search, one group at a time, each against the block's original weights:
//       OPT:   q/k/v (prev: self_attn_layer_norm, loss on the attention output),
//              out_proj (prev: v_proj), fc1 (prev: final_layer_norm, loss on fc1),
//              fc2 (prev: fc1);
//       LLaMA: q/k/v (prev: input_layernorm, loss on the attention output),
//              o_proj (prev: v_proj, only when v_proj and o_proj have the same shape: not
//              with GQA), gate/up (prev: post_attention_layernorm, loss on the MLP output),
//              down (prev: up_proj).
//     For ratio r = i / grid, i = 0 … grid−1: s = max(mean|x|^r, 1e-4), s /= sqrt(max s · min s),
//     W ← Q(W·diag(s))·diag(1/s) for the group's linears, loss = mean((out − out_orig)²);
//     the lowest loss wins (the first one on ties). s is then folded into the previous op.
//  2. Clip search for every linear except q/k (on the scaled weights and inputs x/s):
//     per output channel and group, max_val = absmax·(1 − i/grid), i < max_shrink·grid,
//     W clamped to ±max_val and quantized, error = mean over tokens of (x·Q(W) − x·W)²
//     on every ⌊T/n_tokens⌋-th calibration token; the clamp with the smallest error is kept.
// The next block's inputs come from the unquantized, unscaled block (as in AWQ).
// Groups follow SPEC.md where AWQ needs divisibility: the last group of a row is the
// shorter remainder (stories260k: I = 64 < 128, one group; I = 172: 128 + 44).
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "model/transformer.h"
#include "ptq/calibration.h"
#include "quant/quantizer.h"

namespace cq {

struct AwqOptions {
  QuantizerSpec weight;        // the weight quantizer searched against (AWQ: 4 bits, g128, asymmetric)
  int grid = 20;               // n_grid of both searches
  double max_shrink = 0.5;     // clip search: up to 50 % shrink
  int64_t clip_tokens = 512;   // n_sample_token
  bool clip = true;            // run the clip search (AWQ's mse_range)
  bool show_progress = true;
};

struct AwqScaleRecord {
  int64_t layer = 0;
  std::string previous;              // module whose output is divided by s
  std::vector<std::string> linears;  // modules whose input columns are multiplied by s
  double ratio = 0;                  // the chosen r
  double loss = 0;                   // its loss
  std::vector<float> scales;
};

struct AwqClipRecord {
  std::string linear;
  int64_t groups_per_row = 0;
  std::vector<float> max_values;  // [out_features][groups_per_row]
};

struct AwqResult {
  std::vector<AwqScaleRecord> scales;
  std::vector<AwqClipRecord> clips;
};

// Searches, folds the scales into the model and clamps the weights (not quantized yet).
AwqResult apply_awq(Transformer& model, std::span<const int32_t> calibration_tokens, const CalibrationOptions& calibration,
                    const AwqOptions& options);

}  // namespace cq
