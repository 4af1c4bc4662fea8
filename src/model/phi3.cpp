// Phi-3 (mini/medium, the 4k-context variants) as transformers' Phi3ForCausalLM defines it:
// LLaMA's decoder with fused projections — qkv_proj (rows: q, then k, then v) and
// gate_up_proj (rows: gate, then up; down(silu(gate) · up)) — and sliding-window attention
// when config.json gives `sliding_window` (2047 in Phi-3-mini-4k: the query at position p sees
// p − 2046 .. p). The 128k variants' rope_scaling (longrope, formerly su/yarn) and a
// partial_rotary_factor below 1 are not implemented and are refused.
#include <nlohmann/json.hpp>

#include "model/config.h"
#include "util/error.h"

namespace cq {

ModelConfig parse_phi3_config(const nlohmann::json& json, const std::string& where) {
  RotaryDefaults defaults{.vocab_size = 32064, .hidden_size = 3072, .intermediate_size = 8192, .num_layers = 32,
                          .num_heads = 32, .max_position_embeddings = 4096, .rms_norm_eps = 1e-5,
                          .bos_token_id = 1, .eos_token_id = 32000};
  ModelConfig c = parse_rotary_decoder(json, where, defaults);
  c.family = Family::Phi3;
  require_activation(json, "hidden_act", "silu", {"silu"}, "Phi-3", where);
  c.mlp = MlpKind::SwiGLU;
  c.rope_scaling = parse_rope_scaling(json, where, {});
  const double partial_rotary = json.value("partial_rotary_factor", 1.0);
  if (partial_rotary != 1.0)
    fail("{}: partial_rotary_factor {} is not supported for Phi-3 (supported: 1.0)", where, partial_rotary);
  c.sliding_window = parse_sliding_window(json, where, 0);
  c.fused_qkv = true;
  c.fused_gate_up = true;
  return c;
}

TensorNames phi3_tensor_names() {
  TensorNames n = llama_tensor_names();
  n.q = "self_attn.qkv_proj";
  n.k = n.v = "";
  n.gate_or_fc1 = "mlp.gate_up_proj";
  n.up = "";
  return n;
}

}  // namespace cq
