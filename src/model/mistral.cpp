// Mistral as transformers' MistralForCausalLM defines it: LLaMA's decoder (RMSNorm, rotary
// positions, SwiGLU, grouped-query attention, no biases) with sliding-window attention: with
// `sliding_window` W the query at position p sees positions p − W + 1 .. p (W keys, itself
// included), in prefill, over the KV cache and in packed scoring alike. transformers' default
// when the key is absent is 4096; null (Mistral-7B v0.2 and later) is full causal attention.
#include <nlohmann/json.hpp>

#include "model/config.h"

namespace cq {

ModelConfig parse_mistral_config(const nlohmann::json& json, const std::string& where) {
  RotaryDefaults defaults{.vocab_size = 32000, .hidden_size = 4096, .intermediate_size = 14336, .num_layers = 32,
                          .num_heads = 32, .max_position_embeddings = 4096 * 32, .num_kv_heads = 8};
  ModelConfig c = parse_rotary_decoder(json, where, defaults);
  c.family = Family::Mistral;
  require_activation(json, "hidden_act", "silu", {"silu"}, "Mistral", where);
  c.mlp = MlpKind::SwiGLU;
  c.rope_scaling = parse_rope_scaling(json, where, {"linear", "llama3"});
  c.sliding_window = parse_sliding_window(json, where, 4096);
  return c;
}

}  // namespace cq
