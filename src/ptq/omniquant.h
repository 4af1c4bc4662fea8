#pragma once
// OmniQuant (Shao et al. 2024, arXiv 2308.13137) applied from its learned parameters
// (ptq/omniquant_parameters.h) as its code's smooth_and_quant_inplace does, per decoder layer:
//   1. every *_smooth_scale truncated away from 0 (|s| < 1e-2 → sign(s) · 1e-2);
//   2. LET into the attention norm and q/k/v (qkv_smooth_scale/shift), then into the MLP norm
//      and fc1 (OPT) or up/gate (LLaMA) (fc1_smooth_*): norm bias ← (bias − shift) / s, norm
//      weight ← weight / s, each linear's bias ← bias + W·shift, then W ← W·diag(s);
//   3. v_proj → o_proj (out_smooth_*): v bias ← (bias − shift) / s, v rows ← rows / s, o bias
//      ← bias + W_o·shift, W_o ← W_o·diag(s);
//   4. q_proj rows and bias / qkt_smooth_scale, k_proj rows and bias · qkt_smooth_scale;
//   5. every decoder linear's weight quantized asymmetrically (quant/omniquant_grid.h) per
//      output channel or per group, its range [min, max] first multiplied by
//      sigmoid(lowbound_factor) and sigmoid(upbound_factor) (LWC) when the file has them.
// Grouped-query attention (which OmniQuant's code does not support): out_smooth_* and
// qkt_smooth_scale hold num_key_value_heads × head_dim entries; k/v rows use them directly,
// query head h (q rows, o_proj input columns) the entry of the key/value head it reads,
// h / (heads / kv_heads). docs/BASELINES.md "OmniQuant" has the decisions.
#include <cstdint>
#include <filesystem>
#include <string>

#include "ptq/omniquant_parameters.h"
#include "quant/quantizer.h"

namespace cq {

class Transformer;

// Reads omni_parameters.pth as OmniQuant's code writes it (torch.save of a dict
// {layer index: OrderedDict {parameter name: tensor}}) with the restricted unpickler;
// float32/float16/bfloat16 tensors. Throws cq::Error naming the file and what is wrong.
OmniQuantParameters read_omniquant_parameters(const std::filesystem::path& file);

// How the weights are quantized: bits (16: not at all) and group size (0: per output channel).
struct OmniQuantWeightSetting {
  int bits = 16;
  int64_t group_size = 0;
};

// Checks the parameters against the model and the weight setting: one entry per decoder
// layer, known names only, LET all-or-none and LWC all-or-none (the same in every layer),
// the shapes the model implies, finite values, no zero scale, and (RMSNorm families, whose
// norms have no bias, as OmniQuant keeps LLaMA's shifts at 0) zero qkv/fc1 shifts.
// `source` names the file in messages.
void check_omniquant_parameters(const Transformer& model, const OmniQuantParameters& parameters,
                                const OmniQuantWeightSetting& weights, const std::string& source);

// What was applied, for reports.
struct OmniQuantRecord {
  bool let = false;  // learnable equivalent transformation folded
  bool lwc = false;  // learnable weight clipping used
  // Per linear layer (model.linear_layers() order), when the weights were quantized: the grid
  // they lie on, group_scales and group_zeros per row and group (group_size = in per output
  // channel; zero points as OmniQuant computes them, not clamped to the codes), codes left
  // empty (codes_on_grid recovers them exactly). A quantized checkpoint stores these.
  std::vector<QuantizedMatrix> grids;
};

// Steps 1-5 above (check_omniquant_parameters first). With weights.bits == 16 only LET is folded.
OmniQuantRecord apply_omniquant(Transformer& model, const OmniQuantParameters& parameters,
                                const OmniQuantWeightSetting& weights, const std::string& source);

// The OmniQuant name of a decoder linear ("self_attn.q_proj", "fc1", "mlp.down_proj"): its
// Hugging Face module name after "layers.<i>.".
std::string omniquant_linear_name(const std::string& module_name);

}  // namespace cq
