// LLaMA-1/2/3 as Hugging Face's LlamaForCausalLM defines it: RMSNorm, rotary positions
// (rotate_half convention, LLaMA-3.1 rope_scaling), SwiGLU MLP, grouped-query attention.
#include <nlohmann/json.hpp>

#include "model/config.h"
#include "util/error.h"

namespace cq {

ModelConfig parse_llama_config(const nlohmann::json& json, const std::string& where) {
  RotaryDefaults defaults{.vocab_size = 32000, .hidden_size = 4096, .intermediate_size = 11008, .num_layers = 32,
                          .num_heads = 32, .max_position_embeddings = 2048};
  ModelConfig c = parse_rotary_decoder(json, where, defaults);
  c.family = Family::LLaMA;
  require_activation(json, "hidden_act", "silu", {"silu"}, "LLaMA", where);
  c.mlp = MlpKind::SwiGLU;
  c.rope_scaling = parse_rope_scaling(json, where, {"linear", "llama3"});
  c.attention_bias = c.attention_out_bias = json.value("attention_bias", false);
  c.mlp_bias = json.value("mlp_bias", false);
  return c;
}

TensorNames llama_tensor_names() {
  TensorNames n;
  n.embed_tokens = "model.embed_tokens.weight";
  n.final_norm = "model.norm";
  n.lm_head = "lm_head.weight";
  n.layer_prefix = "model.layers.";
  n.attn_norm = "input_layernorm";
  n.mlp_norm = "post_attention_layernorm";
  n.q = "self_attn.q_proj";
  n.k = "self_attn.k_proj";
  n.v = "self_attn.v_proj";
  n.o = "self_attn.o_proj";
  n.gate_or_fc1 = "mlp.gate_proj";
  n.up = "mlp.up_proj";
  n.down_or_fc2 = "mlp.down_proj";
  return n;
}

}  // namespace cq
