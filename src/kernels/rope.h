#pragma once
// Rotary position embeddings as Hugging Face's LLaMA applies them (rotate_half convention):
// in each head, element i < d/2 pairs with element i + d/2, and the pair turns by the angle
// position · inv_freq_i, computed in float32.
#include <cstdint>
#include <span>
#include <vector>

namespace cq::kernels {

// How a checkpoint stretches the rotary frequencies to a longer context.
enum class RopeScalingKind {
  None,
  Linear,  // every inv_freq / factor
  Llama3,  // LLaMA-3.1: low frequencies / factor, high ones kept, a smooth blend between
};

struct RopeFrequencyScaling {
  RopeScalingKind kind = RopeScalingKind::None;
  double factor = 1.0;
  double low_freq_factor = 1.0;   // llama3 only
  double high_freq_factor = 4.0;  // llama3 only
  int64_t original_context = 8192;  // llama3: original_max_position_embeddings
};

// inv_freq_i = 1 / theta^(2i / head_dim) for i < head_dim / 2, in float32 as HF computes it,
// then scaled.
std::vector<float> rope_inverse_frequencies(int64_t head_dim, double theta, const RopeFrequencyScaling& scaling);

// Rotates `heads` heads of head_dim in each of the positions.size() rows of x (row-major,
// heads · head_dim wide), row r by positions[r], in place. inv_freq: head_dim / 2 values.
void apply_rope(float* x, int64_t heads, int64_t head_dim, std::span<const int64_t> positions, const float* inv_freq);

}  // namespace cq::kernels
