#pragma once
// SmoothQuant (Xiao et al. 2023), as the authors' `smooth_ln_fcs` computes it: per input
// channel j of the linears that read a norm's output,
//   s_j = max(max|X_j|^α / max(max_k |W_kj| over those linears, 1e-5)^(1−α), 1e-5),
// folded exactly into the model: norm weight and bias /= s, the linears' columns *= s.
// OPT: q/k/v from self_attn_layer_norm, fc1 from final_layer_norm; LLaMA: q/k/v from
// input_layernorm, gate/up from post_attention_layernorm. α: 0.5 for OPT, 0.8 for LLaMA.
#include <cstdint>
#include <span>
#include <vector>

#include "model/transformer.h"
#include "ptq/calibration.h"

namespace cq {

// The authors' default migration strength for a family (OPT 0.5, LLaMA 0.8).
double default_migration_strength(const ModelConfig& config);

struct SmoothingFactors {
  int64_t layer = 0;
  InputSite site = InputSite::AttentionIn;  // AttentionIn or MlpIn: the norm that is divided
  std::vector<float> scales;                // s_j, one per input channel
};

// Computes s for every (layer, norm) from the calibration's column maxima and folds it.
// Throws for post-norm models (nothing to fold the division into).
std::vector<SmoothingFactors> apply_smoothquant(Transformer& model, const CalibrationStats& calibration, double alpha);

// Exact folding used by SmoothQuant and AWQ: X·diag(1/s) by the norm before `site`, the
// weight columns of every linear reading `site` times s.
void fold_scales_into_norm(Transformer& model, int64_t layer, InputSite site, std::span<const float> scales);
// AWQ's scale_fc_fc: rows (and bias) of `previous` divided by s, columns of `next` times s.
// Exact when what lies between them is linear per channel (attention's value path, ReLU,
// the up half of a gated MLP). first_row: the rows of a fused `previous` that feed `next`
// (v of qkv_proj, up of gate_up_proj), scales.size() of them.
void fold_scales_into_linear(Transformer& model, int64_t previous, std::span<const int64_t> next, std::span<const float> scales,
                             int64_t first_row = 0);

// The linears reading one input site of a block (indexes into linear_layers()).
std::vector<int64_t> site_readers(const Transformer& model, int64_t layer, InputSite site);

}  // namespace cq

namespace cq {
// SmoothQuant's static per-tensor activation quantizer: Δ = calibrated max|X| / qmax for
// every matrix (values beyond ±max|X| are clipped to ±qmax).
std::unique_ptr<Quantizer> make_static_per_tensor_quantizer(int bits, float calibrated_absmax);
}  // namespace cq
