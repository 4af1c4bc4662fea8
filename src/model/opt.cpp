// OPT (Zhang et al. 2022) as Hugging Face's OPTForCausalLM defines it: learned positions
// offset by 2, LayerNorm before (or after, OPT-350m) each block, ReLU MLP, biases, and
// optional project_in/project_out when word_embed_proj_dim != hidden_size.
#include <nlohmann/json.hpp>

#include "model/config.h"
#include "util/error.h"
#include "util/json_number.h"
#include "util/limits.h"

namespace cq {

ModelConfig parse_opt_config(const nlohmann::json& json, const std::string& where) {
  ModelConfig c;
  c.family = Family::OPT;
  c.model_type = "opt";
  c.vocab_size = json_integer_or(json, "vocab_size", int64_t{50272}, where);
  c.hidden_size = json_integer_or(json, "hidden_size", int64_t{768}, where);
  c.intermediate_size = json_integer_or(json, "ffn_dim", int64_t{3072}, where);
  c.num_layers = json_integer_or(json, "num_hidden_layers", int64_t{12}, where);
  c.num_heads = json_integer_or(json, "num_attention_heads", int64_t{12}, where);
  c.num_kv_heads = c.num_heads;
  c.head_dim = c.num_heads > 0 ? c.hidden_size / c.num_heads : 0;
  if (c.num_heads > 0 && c.head_dim * c.num_heads != c.hidden_size)
    fail("{}: hidden_size {} is not divisible by num_attention_heads {}", where, c.hidden_size, c.num_heads);
  c.max_position_embeddings = json_integer_or(json, "max_position_embeddings", int64_t{2048}, where);
  c.word_embed_proj_dim = json_integer_or(json, "word_embed_proj_dim", c.hidden_size, where);
  c.norm = NormKind::LayerNorm;
  c.norm_eps = 1e-5;  // HF's OPT uses nn.LayerNorm's default
  c.pre_norm = json.value("do_layer_norm_before", true);
  c.final_norm = c.pre_norm && !json.value("_remove_final_layer_norm", false);
  if (!json.value("layer_norm_elementwise_affine", true))
    fail("{}: layer_norm_elementwise_affine=false is not supported", where);
  const std::string activation = json.value("activation_function", "relu");
  if (activation != "relu") fail("{}: activation_function '{}' is not supported for OPT (only relu)", where, activation);
  c.mlp = MlpKind::ReLU;
  c.positions = PositionKind::Learned;
  c.position_offset = 2;
  c.query_scaling = QueryScaling::AfterProjection;
  c.default_migration_strength = 0.5;
  const bool bias = json.value("enable_bias", true);
  c.attention_bias = c.attention_out_bias = c.mlp_bias = bias;
  c.tie_word_embeddings = json.value("tie_word_embeddings", true);
  c.bos_token_id = static_cast<int32_t>(json_integer_or(json, "bos_token_id", 2, where, -1, kMaxTokenIds - 1));
  c.eos_token_id = static_cast<int32_t>(json_integer_or(json, "eos_token_id", 2, where, -1, kMaxTokenIds - 1));
  return c;
}

TensorNames opt_tensor_names() {
  TensorNames n;
  n.embed_tokens = "model.decoder.embed_tokens.weight";
  n.embed_positions = "model.decoder.embed_positions.weight";
  n.project_in = "model.decoder.project_in.weight";
  n.project_out = "model.decoder.project_out.weight";
  n.final_norm = "model.decoder.final_layer_norm";
  n.lm_head = "lm_head.weight";
  n.layer_prefix = "model.decoder.layers.";
  n.attn_norm = "self_attn_layer_norm";
  n.mlp_norm = "final_layer_norm";
  n.q = "self_attn.q_proj";
  n.k = "self_attn.k_proj";
  n.v = "self_attn.v_proj";
  n.o = "self_attn.out_proj";
  n.gate_or_fc1 = "fc1";
  n.down_or_fc2 = "fc2";
  return n;
}

}  // namespace cq
