#pragma once
// What differs between model families, as data: one generic decoder (transformer.cpp)
// reads this struct. opt.cpp and llama.cpp fill it from config.json and name the tensors.
#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace cq {

enum class Family { OPT, LLaMA };
enum class NormKind { LayerNorm, RMSNorm };
enum class MlpKind { ReLU, SwiGLU };
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
  int32_t bos_token_id = -1;
  int32_t eos_token_id = -1;
  // SmoothQuant's migration strength when none is given: the SmoothQuant authors' choice
  // for the family (OPT 0.5, LLaMA 0.8).
  double default_migration_strength = 0.8;

  bool has_projections() const { return word_embed_proj_dim != hidden_size; }
  std::string family_name() const { return family == Family::OPT ? "opt" : "llama"; }
};

// Tensor names of one family, so the generic decoder never spells them out.
struct TensorNames {
  std::string embed_tokens, embed_positions, project_in, project_out, final_norm, lm_head;
  std::string layer_prefix;  // e.g. "model.layers." — followed by the layer index
  std::string attn_norm, mlp_norm, q, k, v, o, gate_or_fc1, up, down_or_fc2;
};

// Reads DIR/config.json; throws cq::Error naming the file for unsupported or malformed configs.
ModelConfig load_model_config(const std::filesystem::path& model_dir);
ModelConfig parse_model_config(const nlohmann::json& json, const std::string& where);
TensorNames tensor_names(const ModelConfig& config);

// Family parsers (opt.cpp, llama.cpp).
ModelConfig parse_opt_config(const nlohmann::json& json, const std::string& where);
ModelConfig parse_llama_config(const nlohmann::json& json, const std::string& where);
TensorNames opt_tensor_names();
TensorNames llama_tensor_names();

}  // namespace cq
