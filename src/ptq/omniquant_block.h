#pragma once
// One decoder block as OmniQuant trains it (Shao et al. 2024; docs/BASELINES.md, "OmniQuant
// calibration"): the learnable equivalent transformation (LET) applied to the block's
// weights and norms, learnable weight clipping (LWC) in the fake weight quantizer, dynamic
// per-token activation quantizers, all with straight-through rounding, and the MSE against
// the full-precision block's output. Forward and hand-written backward, for OPT blocks
// (LayerNorm, biases, ReLU, queries scaled after q_proj) and LLaMA blocks (RMSNorm, RoPE,
// SwiGLU, grouped-query attention); every product is an FP32 GEMM (kernels/matmul.h).
#include <array>
#include <cstdint>
#include <memory>
#include <vector>

namespace cq {

// The linears of a block. Fc1 is LLaMA's gate_proj, Fc2 its down_proj; Up is LLaMA's only.
enum class OmniLinear { Q, K, V, O, Fc1, Up, Fc2 };
inline constexpr int kOmniLinears = 7;

struct OmniDenseLinear {
  int64_t out = 0, in = 0;  // out == 0: absent (OPT's Up)
  std::vector<float> weight;  // out x in, row-major
  std::vector<float> bias;    // empty: none
};

struct OmniBlockWeights {
  bool llama = false;  // else OPT (pre-LN)
  int64_t hidden = 0, heads = 0, kv_heads = 0, head_dim = 0, ffn = 0;
  float norm_eps = 1e-5f;
  std::vector<float> rope_inv_freq;  // LLaMA: head_dim / 2 values
  std::vector<float> norm1_weight, norm1_bias, norm2_weight, norm2_bias;  // biases empty for RMSNorm
  std::array<OmniDenseLinear, kOmniLinears> linears;
  const OmniDenseLinear& linear(OmniLinear which) const { return linears[static_cast<size_t>(which)]; }
  int64_t q_width() const { return heads * head_dim; }
  int64_t kv_width() const { return kv_heads * head_dim; }
};

struct OmniQuantSettings {
  int weight_bits = 4;      // >= 16: weights not quantized
  int activation_bits = 4;  // >= 16: activations (and q, k, v) not quantized
  int64_t group_size = 0;   // 0: one range per output channel
  bool lwc = true;          // learnable clipping factors in the weight quantizer
  bool let = true;          // learnable equivalent transformation
  bool shift = true;        // LET trains shifts (OPT with quantized activations), else scales only
};

// The trainable tensors (or their gradients), OmniQuant's parameters of one layer. LET
// vectors are empty without LET; out_* and qkt_scale have one entry per key/value channel
// (kv_heads x head_dim; query head h uses the entries of key/value head h / (heads /
// kv_heads)). LWC factors: one per weight-quantization range (out rows, or out x in /
// group_size groups in row-major order), before the sigmoid; empty without LWC.
struct OmniBlockParameters {
  std::vector<float> qkv_scale, qkv_shift, out_scale, out_shift, fc1_scale, fc1_shift, qkt_scale;
  std::array<std::vector<float>, kOmniLinears> upbound, lowbound;
  std::vector<std::vector<float>*> all();  // every tensor, in a fixed order
};

// Zeros shaped as `parameters` (a gradient, AdamW's moments).
OmniBlockParameters omni_zero_like(const OmniBlockParameters& parameters);

// Scratch of one forward (what the backward reuses); keep one per thread of work.
struct OmniBlockWorkspace;
struct OmniBlockWorkspaceDeleter {
  void operator()(OmniBlockWorkspace* workspace) const;
};
using OmniWorkspacePtr = std::unique_ptr<OmniBlockWorkspace, OmniBlockWorkspaceDeleter>;
OmniWorkspacePtr make_omni_workspace();

// The inputs of the three LET-smoothed sites of the last forward, before any quantization
// (valid until the next call): the q/k/v input (norm1 output), o_proj's input, fc1's (or
// gate/up's) input; rows x width, row-major.
struct OmniSiteInputs {
  const float* attention_in;
  const float* attention_out;
  const float* mlp_in;
};

// Runs the block on one sequence x [length][hidden] with `parameters` and `settings`
// (quantized=false: the full-precision block, parameters ignored); writes the output to `out`
// (may be null). With `target`, returns the MSE to it (mean over length x hidden) and, with
// `gradients` (shaped as `parameters`), writes the gradient of that loss to every tensor.
double omni_block_run(const OmniBlockWeights& block, const OmniBlockParameters& parameters,
                      const OmniQuantSettings& settings, bool quantized, const float* x, int64_t length,
                      const float* target, float* out, OmniBlockParameters* gradients, OmniBlockWorkspace& workspace);
OmniSiteInputs omni_site_inputs(const OmniBlockWorkspace& workspace);

// The LWC factors of an out x in weight quantized per output channel (group_size 0) or in
// groups of group_size inputs, the last of a row the shorter remainder.
int64_t omni_weight_ranges(int64_t out, int64_t in, int64_t group_size);

// OmniQuant's fake quantizer on `rows` contiguous ranges of `width` values: per range
// min/max (times sigmoid(up) / sigmoid(low) when given), asymmetric, scale clamped to
// [1e-5, 1e4], zero point rounded, codes clamped to [0, 2^bits - 1].
void omni_fake_quantize(const float* x, int64_t rows, int64_t width, int bits, const float* up, const float* low,
                        float* y);
// Its straight-through backward: dx (overwritten), and dup/dlow (overwritten) when up/low.
void omni_fake_quantize_backward(const float* x, const float* dy, int64_t rows, int64_t width, int bits,
                                 const float* up, const float* low, float* dx, float* dup, float* dlow);

}  // namespace cq
