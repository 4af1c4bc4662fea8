// Qwen2 / Qwen2.5 as transformers' Qwen2ForCausalLM defines it: LLaMA's decoder with biases
// on q_proj, k_proj and v_proj (none on o_proj or the MLP), rope_theta from config.json
// (1e6 in the released models) and tied embeddings in the small sizes. Qwen2's optional
// sliding window (use_sliding_window: true, only on the layers from max_window_layers on) is
// not implemented and is refused; the released checkpoints set it false.
#include <nlohmann/json.hpp>

#include "model/config.h"
#include "util/error.h"

namespace cq {

ModelConfig parse_qwen2_config(const nlohmann::json& json, const std::string& where) {
  RotaryDefaults defaults{.vocab_size = 151936, .hidden_size = 4096, .intermediate_size = 22016, .num_layers = 32,
                          .num_heads = 32, .max_position_embeddings = 32768, .bos_token_id = -1, .eos_token_id = -1};
  ModelConfig c = parse_rotary_decoder(json, where, defaults);
  c.family = Family::Qwen2;
  require_activation(json, "hidden_act", "silu", {"silu"}, "Qwen2", where);
  c.mlp = MlpKind::SwiGLU;
  c.rope_scaling = parse_rope_scaling(json, where, {"linear", "llama3"});
  if (json.value("use_sliding_window", false))
    fail("{}: use_sliding_window true is not supported for Qwen2 (supported: false, full attention in every layer)",
         where);
  c.attention_bias = true;  // q/k/v
  c.attention_out_bias = false;
  c.mlp_bias = false;
  return c;
}

}  // namespace cq
