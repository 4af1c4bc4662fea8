#pragma once
// What differs between model families, as data: one generic decoder (transformer.cpp)
// reads this struct. One file per family (opt.cpp, llama.cpp, mistral.cpp, qwen2.cpp,
// phi3.cpp, gemma.cpp) fills it from config.json and names the tensors.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace cq {

enum class Family { OPT, LLaMA, Mistral, Qwen2, Phi3, Gemma };
enum class NormKind { LayerNorm, RMSNorm };
// ReLU: fc2(relu(fc1(x))); the gated kinds down(act(gate(x)) · up(x)) with act = SiLU
// (SwiGLU) or the tanh-approximated GELU (GeGLU, Gemma's gelu_pytorch_tanh).
enum class MlpKind { ReLU, SwiGLU, GeGLU };
enum class PositionKind { Learned, Rotary };
// Where 1/sqrt(head_dim) is applied: OPT multiplies the queries after q_proj (HF's
// OPTAttention), LLaMA the scores. The same maths, rounded differently.
enum class QueryScaling { AfterProjection, OnScores };

struct RopeScaling {
  std::string type = "none";          // none | linear | llama3
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  Family family = Family::LLaMA;
  std::string model_type;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;          // < num_heads: grouped-query attention
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 0;
  int64_t word_embed_proj_dim = 0;   // OPT-350m: != hidden_size, with project_in/out
  NormKind norm = NormKind::RMSNorm;
  double norm_eps = 1e-5;
  bool pre_norm = true;              // OPT do_layer_norm_before
  bool final_norm = true;
  MlpKind mlp = MlpKind::SwiGLU;
  PositionKind positions = PositionKind::Rotary;
  int64_t position_offset = 0;       // OPT's learned positions start at row 2
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  QueryScaling query_scaling = QueryScaling::OnScores;
  bool attention_bias = false;       // q/k/v (and o for OPT) biases
  bool attention_out_bias = false;
  bool mlp_bias = false;
  bool tie_word_embeddings = false;
  // Sliding-window attention (Mistral, Phi-3): > 0, the query at position p attends to the
  // positions p − sliding_window + 1 .. p only (transformers' mask); 0: every earlier position.
  int64_t sliding_window = 0;
  // Fused projections stored as one tensor (Phi-3): qkv_proj's rows are q, then k, then v;
  // gate_up_proj's rows are gate, then up. Loaded as one linear layer each; the decoder
  // splits their outputs.
  bool fused_qkv = false;
  bool fused_gate_up = false;
  // Gemma: RMSNorm multiplies by (1 + w): the decoder keeps the effective weight w + offset
  // (what SmoothQuant and AWQ divide), a checkpoint stores w.
  double norm_weight_offset = 0.0;
  // Gemma: token embeddings times sqrt(hidden_size), that factor in the compute dtype as
  // transformers has it (float32: this decoder computes in float32 whatever the stored dtype).
  bool scale_embeddings = false;
  int32_t bos_token_id = -1;
  int32_t eos_token_id = -1;
  // SmoothQuant's migration strength when none is given: the SmoothQuant authors' choice
  // for the family (OPT 0.5, LLaMA 0.8).
  double default_migration_strength = 0.8;

  bool has_projections() const { return word_embed_proj_dim != hidden_size; }
  bool gated_mlp() const { return mlp != MlpKind::ReLU; }
  std::string family_name() const;
};

// Tensor names of one family, so the generic decoder never spells them out.
struct TensorNames {
  std::string embed_tokens, embed_positions, project_in, project_out, final_norm, lm_head;
  std::string layer_prefix;  // e.g. "model.layers." — followed by the layer index
  std::string attn_norm, mlp_norm, q, k, v, o, gate_or_fc1, up, down_or_fc2;
};

// The model_type values config.json may name, for error messages ("opt, llama, ...").
std::string supported_model_types();

// Reads DIR/config.json; throws cq::Error naming the file for unsupported or malformed configs.
ModelConfig load_model_config(const std::filesystem::path& model_dir);
ModelConfig parse_model_config(const nlohmann::json& json, const std::string& where);
TensorNames tensor_names(const ModelConfig& config);

// Family parsers (opt.cpp, llama.cpp, mistral.cpp, qwen2.cpp, phi3.cpp, gemma.cpp).
ModelConfig parse_opt_config(const nlohmann::json& json, const std::string& where);
ModelConfig parse_llama_config(const nlohmann::json& json, const std::string& where);
ModelConfig parse_mistral_config(const nlohmann::json& json, const std::string& where);
ModelConfig parse_qwen2_config(const nlohmann::json& json, const std::string& where);
ModelConfig parse_phi3_config(const nlohmann::json& json, const std::string& where);
ModelConfig parse_gemma_config(const nlohmann::json& json, const std::string& where);
TensorNames opt_tensor_names();
TensorNames llama_tensor_names();  // also Mistral, Qwen2 and Gemma: the same module names
TensorNames phi3_tensor_names();   // qkv_proj in q, gate_up_proj in gate_or_fc1; k, v, up empty

// What the rotary-position families share (rotary_decoder.cpp): their defaults differ.
struct RotaryDefaults {
  int64_t vocab_size, hidden_size, intermediate_size, num_layers, num_heads, max_position_embeddings;
  int64_t num_kv_heads = 0;  // 0: num_attention_heads
  int64_t head_dim = 0;      // 0: hidden_size / num_attention_heads
  double rms_norm_eps = 1e-6;
  int32_t bos_token_id = 1, eos_token_id = 2;
  bool tie_word_embeddings = false;
};
// Sizes, rms_norm_eps, rope_theta, tie_word_embeddings, bos/eos ids, RMSNorm, rotary
// positions, scores scaled by 1/sqrt(head_dim).
ModelConfig parse_rotary_decoder(const nlohmann::json& json, const std::string& where, const RotaryDefaults& defaults);
// rope_scaling: null/absent/"default" → none; `supported` lists the types the family accepts
// (of linear, llama3); any other is refused naming them.
RopeScaling parse_rope_scaling(const nlohmann::json& json, const std::string& where,
                               const std::vector<std::string>& supported);
// hidden_act must be one of `supported`; returns it.
std::string require_activation(const nlohmann::json& json, const std::string& key, const std::string& fallback,
                               const std::vector<std::string>& supported, const std::string& family,
                               const std::string& where);
// sliding_window: null → 0, else a positive integer.
int64_t parse_sliding_window(const nlohmann::json& json, const std::string& where, int64_t fallback);

}  // namespace cq
