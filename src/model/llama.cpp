// LLaMA-1/2/3 as Hugging Face's LlamaForCausalLM defines it: RMSNorm, rotary positions
// (rotate_half convention, LLaMA-3.1 rope_scaling), SwiGLU MLP, grouped-query attention.
#include <nlohmann/json.hpp>

#include "model/config.h"
#include "util/error.h"
#include "util/json_number.h"
#include "util/limits.h"

namespace cq {

ModelConfig parse_llama_config(const nlohmann::json& json, const std::string& where) {
  ModelConfig c;
  c.family = Family::LLaMA;
  c.query_scaling = QueryScaling::OnScores;
  c.default_migration_strength = 0.8;
  c.model_type = json.value("model_type", "llama");
  c.vocab_size = json_integer_or(json, "vocab_size", int64_t{32000}, where);
  c.hidden_size = json_integer_or(json, "hidden_size", int64_t{4096}, where);
  c.intermediate_size = json_integer_or(json, "intermediate_size", int64_t{11008}, where);
  c.num_layers = json_integer_or(json, "num_hidden_layers", int64_t{32}, where);
  c.num_heads = json_integer_or(json, "num_attention_heads", int64_t{32}, where);
  c.num_kv_heads = json_integer_or(json, "num_key_value_heads", c.num_heads, where);
  c.head_dim = json_integer_or(json, "head_dim", c.num_heads > 0 ? c.hidden_size / c.num_heads : 0, where);
  c.max_position_embeddings = json_integer_or(json, "max_position_embeddings", int64_t{2048}, where);
  c.word_embed_proj_dim = c.hidden_size;
  c.norm = NormKind::RMSNorm;
  c.norm_eps = json.value("rms_norm_eps", 1e-6);
  const std::string activation = json.value("hidden_act", "silu");
  if (activation != "silu") fail("{}: hidden_act '{}' is not supported for LLaMA (only silu)", where, activation);
  c.mlp = MlpKind::SwiGLU;
  c.positions = PositionKind::Rotary;
  c.rope_theta = json.value("rope_theta", 10000.0);
  if (json.contains("rope_scaling") && !json["rope_scaling"].is_null()) {
    const auto& scaling = json["rope_scaling"];
    if (!scaling.is_object()) fail("{}: rope_scaling must be an object or null", where);
    c.rope_scaling.type = scaling.value("rope_type", scaling.value("type", "default"));
    c.rope_scaling.factor = scaling.value("factor", 1.0);
    if (c.rope_scaling.type == "llama3") {
      c.rope_scaling.low_freq_factor = scaling.value("low_freq_factor", 1.0);
      c.rope_scaling.high_freq_factor = scaling.value("high_freq_factor", 4.0);
      c.rope_scaling.original_max_position_embeddings = json_integer_or(scaling, "original_max_position_embeddings", 8192, where);
      if (c.rope_scaling.high_freq_factor <= c.rope_scaling.low_freq_factor)
        fail("{}: rope_scaling high_freq_factor must exceed low_freq_factor", where);
    } else if (c.rope_scaling.type == "default") {
      c.rope_scaling.type = "none";
    } else if (c.rope_scaling.type != "linear") {
      fail("{}: rope_scaling type '{}' is not supported (supported: linear, llama3)", where, c.rope_scaling.type);
    }
    if (!(c.rope_scaling.factor > 0)) fail("{}: rope_scaling factor must be positive", where);
  }
  c.attention_bias = c.attention_out_bias = json.value("attention_bias", false);
  c.mlp_bias = json.value("mlp_bias", false);
  c.tie_word_embeddings = json.value("tie_word_embeddings", false);
  auto token_id = [&](const char* key, int32_t fallback) {
    if (!json.contains(key) || json[key].is_null()) return fallback;
    const nlohmann::json& value = json[key];
    if (value.is_array() && value.empty()) return fallback;
    const nlohmann::json& id = value.is_array() ? value[0] : value;  // LLaMA-3.1: a list of eos ids
    return static_cast<int32_t>(json_integer(id, where, key, -1, kMaxTokenIds - 1));
  };
  c.bos_token_id = token_id("bos_token_id", 1);
  c.eos_token_id = token_id("eos_token_id", 2);
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
