// Loading the decoder's parameters: every tensor through the WeightSource, checked against
// the shapes config.json implies, and the rotary frequency table.
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "kernels/rope.h"
#include "model/transformer.h"
#include "util/error.h"

namespace cq {

namespace {

kernels::RopeFrequencyScaling rope_frequency_scaling(const RopeScaling& scaling) {
  kernels::RopeFrequencyScaling kernel;
  if (scaling.type == "linear") kernel.kind = kernels::RopeScalingKind::Linear;
  else if (scaling.type == "llama3") kernel.kind = kernels::RopeScalingKind::Llama3;
  else if (scaling.type != "none") fail("internal error: rope_scaling type '{}'", scaling.type);
  kernel.factor = scaling.factor;
  kernel.low_freq_factor = scaling.low_freq_factor;
  kernel.high_freq_factor = scaling.high_freq_factor;
  kernel.original_context = scaling.original_max_position_embeddings;
  return kernel;
}

}  // namespace

std::span<float> LinearLayer::mutable_weight() {
  if (owned_weight.empty()) owned_weight = to_f32(*stored_weight);
  return owned_weight;
}

Transformer::Transformer(const std::filesystem::path& model_dir, std::unique_ptr<WeightSource> weights)
    : directory_(model_dir), config_(load_model_config(model_dir)), names_(tensor_names(config_)),
      weights_(std::move(weights)) {
  if (!weights_) fail("internal error: a model needs a weight source");
  load_weights();
}

Transformer::Transformer(const std::filesystem::path& model_dir)
    : directory_(model_dir), config_(load_model_config(model_dir)), names_(tensor_names(config_)),
      weights_(open_checkpoint_weights(model_dir)) {
  load_weights();
}

const TensorInfo& Transformer::value_tensor(const std::string& name, const std::vector<int64_t>& shape) const {
  const TensorInfo& tensor = checkpoint().tensor(name, shape);
  if (is_integer(tensor.dtype))
    fail("{}: tensor '{}' holds {} integers; model values must be F32, F16 or BF16", tensor.file.string(), name,
         dtype_name(tensor.dtype));
  return tensor;
}

int64_t Transformer::add_linear(const std::string& module, int64_t layer, InputSite site, int64_t in, int64_t out,
                                bool bias) {
  LinearLayer linear;
  linear.name = module;
  linear.layer = layer;
  linear.site = site;
  linear.in_features = in;
  linear.out_features = out;
  if (std::optional<std::vector<float>> values = weights_->linear_weight(module, out, in)) {
    // The source's FP32 values (a quantized checkpoint: codes, scales and zero points from the
    // mapping, and the only FP32 copy is the result); stored_weight still names the tensor
    // where there is one (compressed-tensors' pack-quantized stores `module`.weight_packed).
    if (static_cast<int64_t>(values->size()) != out * in)
      fail("internal error: {} values for {} [{}, {}]", values->size(), module, out, in);
    if (checkpoint().contains(module + ".weight")) linear.stored_weight = &checkpoint().tensor(module + ".weight");
    linear.owned_weight = std::move(*values);
    source_linear_parameters_ += out * in;
  } else {
    linear.stored_weight = &value_tensor(module + ".weight", {out, in});
  }
  if (bias || weights_->adds_bias(module)) linear.bias = to_f32(value_tensor(module + ".bias", {out}));
  linears_.push_back(std::move(linear));
  return static_cast<int64_t>(linears_.size()) - 1;
}

Transformer::Norm Transformer::load_norm(const std::string& module, int64_t width) const {
  Norm norm;
  norm.weight = to_f32(value_tensor(module + ".weight", {width}));
  // Gemma's x·(1 + w): the decoder multiplies by the effective weight, computed in float32 as
  // transformers' GemmaRMSNorm does.
  if (config_.norm_weight_offset != 0)
    for (float& w : norm.weight) w += static_cast<float>(config_.norm_weight_offset);
  if (config_.norm == NormKind::LayerNorm) norm.bias = to_f32(value_tensor(module + ".bias", {width}));
  return norm;
}

void Transformer::load_weights() {
  const ModelConfig& c = config_;
  const SafetensorsCheckpoint& stored = checkpoint();
  const int64_t embed_dim = c.word_embed_proj_dim;
  embed_tokens_ = &value_tensor(names_.embed_tokens, {c.vocab_size, embed_dim});
  if (c.positions == PositionKind::Learned)
    embed_positions_ = &value_tensor(names_.embed_positions, {c.max_position_embeddings + c.position_offset, c.hidden_size});
  if (c.has_projections()) {
    project_in_ = &value_tensor(names_.project_in, {c.hidden_size, embed_dim});
    project_out_ = &value_tensor(names_.project_out, {embed_dim, c.hidden_size});
  }
  // Tied embeddings use embed_tokens even when a copy of lm_head is stored (as HF does).
  if (c.tie_word_embeddings || !stored.contains(names_.lm_head)) {
    if (!c.tie_word_embeddings)
      fail("{}: missing tensor '{}' and tie_word_embeddings is false", stored.source().string(), names_.lm_head);
    lm_head_ = embed_tokens_;
  } else {
    lm_head_ = &value_tensor(names_.lm_head, {c.vocab_size, embed_dim});
  }
  const int64_t q_width = c.num_heads * c.head_dim;
  const int64_t kv_width = c.num_kv_heads * c.head_dim;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string prefix = names_.layer_prefix + std::to_string(l) + ".";
    Block block;
    block.attn_norm = load_norm(prefix + names_.attn_norm, c.hidden_size);
    block.mlp_norm = load_norm(prefix + names_.mlp_norm, c.hidden_size);
    if (c.fused_qkv) {
      block.q = add_linear(prefix + names_.q, l, InputSite::AttentionIn, c.hidden_size, q_width + 2 * kv_width,
                           c.attention_bias);
    } else {
      block.q = add_linear(prefix + names_.q, l, InputSite::AttentionIn, c.hidden_size, q_width, c.attention_bias);
      block.k = add_linear(prefix + names_.k, l, InputSite::AttentionIn, c.hidden_size, kv_width, c.attention_bias);
      block.v = add_linear(prefix + names_.v, l, InputSite::AttentionIn, c.hidden_size, kv_width, c.attention_bias);
    }
    block.o = add_linear(prefix + names_.o, l, InputSite::AttentionOut, q_width, c.hidden_size, c.attention_out_bias);
    const int64_t gate_rows = c.fused_gate_up ? 2 * c.intermediate_size : c.intermediate_size;
    block.gate_or_fc1 = add_linear(prefix + names_.gate_or_fc1, l, InputSite::MlpIn, c.hidden_size, gate_rows, c.mlp_bias);
    if (c.gated_mlp() && !c.fused_gate_up)
      block.up = add_linear(prefix + names_.up, l, InputSite::MlpIn, c.hidden_size, c.intermediate_size, c.mlp_bias);
    block.down_or_fc2 = add_linear(prefix + names_.down_or_fc2, l, InputSite::MlpDown, c.intermediate_size, c.hidden_size, c.mlp_bias);
    blocks_.push_back(std::move(block));
  }
  if (c.final_norm) final_norm_ = load_norm(names_.final_norm, c.hidden_size);
  stats_.assign(linears_.size(), KernelStats{});
  backends_.assign(linears_.size(), nullptr);
  activation_quantizers_.assign(static_cast<size_t>(c.num_layers * kInputSites), nullptr);
  // HF: inv_freq_i = 1 / theta^(2i/d), in float32; LLaMA-3.1 rescales low frequencies.
  // GemmaModel: hidden_states * torch.tensor(hidden_size ** 0.5, dtype=hidden_states.dtype),
  // the dtype being the one it computes in: float32 here, as every value of this decoder (a
  // bfloat16 run of transformers would round it, to 45.25 for hidden_size 2048).
  if (c.scale_embeddings) embedding_scale_ = static_cast<float>(std::sqrt(static_cast<double>(c.hidden_size)));
  if (c.positions == PositionKind::Rotary)
    rope_inv_freq_ = kernels::rope_inverse_frequencies(c.head_dim, c.rope_theta, rope_frequency_scaling(c.rope_scaling));
}

int64_t Transformer::parameter_count() const {
  int64_t total = 0;
  const SafetensorsCheckpoint& stored = checkpoint();
  for (const auto& [name, info] : stored.tensors())
    if (weights_->is_parameter(name, info)) total += info.numel();
  // Linear weights the source gave as values count by their logical shape, not as stored.
  total += source_linear_parameters_;
  // A stored copy of a tied lm_head is not a parameter of its own.
  if (config_.tie_word_embeddings && stored.contains(names_.lm_head)) total -= stored.tensor(names_.lm_head).numel();
  return total;
}

}  // namespace cq
