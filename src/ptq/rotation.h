#pragma once
// QuaRot-style rotation of a whole model (arXiv 2404.00456), folded into its weights once,
// before quantization (docs/QUANTIZERS.md, "Rotation"):
//   - each norm's scale (and LayerNorm's bias) is folded into the linears that read it;
//   - the residual stream is rotated by Q = diag(±1)·Ĥ (a randomized Hadamard matrix of the
//     hidden size, signs from the seed): embeddings, q/k/v, gate/up (fc1) and lm_head take Q
//     on their input side, o_proj and down_proj (fc2) produce rotated outputs;
//   - v_proj's outputs and o_proj's inputs are rotated per attention head by Ĥ of head_dim;
//   - down_proj's (fc2's) input gets an online Hadamard transform at run time
//     (Transformer::set_mlp_down_transform), its inverse folded into that weight.
// OPT's LayerNorm subtracts the row mean, which does not commute with Q: every writer of the
// residual stream (token and position embeddings, o_proj, fc2 and their biases) is first made
// to produce zero-mean rows, after which each LayerNorm computes exactly an RMSNorm and is
// replaced by one. Unquantized, the rotated model computes the same function.
#include <cstdint>
#include <string>
#include <vector>

namespace cq {

class Transformer;

struct RotationRecord {
  uint64_t seed = 0;
  std::string hidden;  // constructions of Ĥ (kernels::HadamardTransform::construction)
  std::string head;
  std::string mlp_down;
  bool mean_folded = false;  // LayerNorm models: the residual's mean folded away, norms RMS
};

// Rotates the (unquantized, untransformed) model in place. Throws cq::Error naming the model
// when it cannot be rotated (post-norm OPT, OPT's project_in/out).
RotationRecord rotate_model(Transformer& model, uint64_t seed);

// A quantized checkpoint written from a rotated model (`cq quantize --rotate`): its tensors
// are the rotated ones; this restores what is not a tensor: the online transform, RMSNorm for
// a mean-folded LayerNorm model, a tied lm_head's own rotated copy, lm_head's folded bias.
void restore_rotation(Transformer& model, std::vector<float> lm_head_bias);

}  // namespace cq
