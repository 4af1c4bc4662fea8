// Gemma (v1) as transformers' GemmaForCausalLM defines it: RMSNorm times (1 + w), token
// embeddings times sqrt(hidden_size) (the factor in the compute dtype, float32), a GeGLU MLP
// down(gelu_tanh(gate) · up) — transformers uses the tanh approximation whatever hidden_act
// says unless hidden_activation names another — head_dim from config.json (256 in the
// released models, not hidden / heads), multi-query attention in the 2B, and the lm_head tied
// to the embeddings. Gemma 2 (model_type gemma2: soft-capping, alternating local attention)
// is another family and is refused.
#include <nlohmann/json.hpp>

#include "model/config.h"
#include "util/error.h"

namespace cq {

ModelConfig parse_gemma_config(const nlohmann::json& json, const std::string& where) {
  RotaryDefaults defaults{.vocab_size = 256000, .hidden_size = 3072, .intermediate_size = 24576, .num_layers = 28,
                          .num_heads = 16, .max_position_embeddings = 8192, .head_dim = 256, .bos_token_id = 2,
                          .eos_token_id = 1, .tie_word_embeddings = true};
  ModelConfig c = parse_rotary_decoder(json, where, defaults);
  c.family = Family::Gemma;
  // GemmaMLP reads hidden_activation; when it is absent or null, gelu_pytorch_tanh (hidden_act
  // is ignored: the first releases said "gelu" and were trained with the tanh form).
  require_activation(json, "hidden_activation", "gelu_pytorch_tanh", {"gelu_pytorch_tanh"}, "Gemma", where);
  c.mlp = MlpKind::GeGLU;
  c.rope_scaling = parse_rope_scaling(json, where, {});
  c.attention_bias = c.attention_out_bias = json.value("attention_bias", false);
  c.norm_weight_offset = 1.0;
  c.scale_embeddings = true;
  return c;
}

}  // namespace cq
