// What LLaMA, Mistral, Qwen2, Phi-3 and Gemma read the same way from config.json: sizes,
// RMSNorm epsilon, rotary positions (rope_theta, rope_scaling), tied embeddings, token ids.
// Each family's file supplies its transformers defaults and its own differences.
#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "model/config.h"
#include "util/error.h"
#include "util/json_number.h"
#include "util/limits.h"

namespace cq {

ModelConfig parse_rotary_decoder(const nlohmann::json& json, const std::string& where, const RotaryDefaults& d) {
  ModelConfig c;
  c.query_scaling = QueryScaling::OnScores;
  c.default_migration_strength = 0.8;
  c.model_type = json.value("model_type", "llama");
  c.vocab_size = json_integer_or(json, "vocab_size", d.vocab_size, where);
  c.hidden_size = json_integer_or(json, "hidden_size", d.hidden_size, where);
  c.intermediate_size = json_integer_or(json, "intermediate_size", d.intermediate_size, where);
  c.num_layers = json_integer_or(json, "num_hidden_layers", d.num_layers, where);
  c.num_heads = json_integer_or(json, "num_attention_heads", d.num_heads, where);
  c.num_kv_heads = json_integer_or(json, "num_key_value_heads", d.num_kv_heads > 0 ? d.num_kv_heads : c.num_heads, where);
  const int64_t default_head_dim = d.head_dim > 0 ? d.head_dim : (c.num_heads > 0 ? c.hidden_size / c.num_heads : 0);
  c.head_dim = json_integer_or(json, "head_dim", default_head_dim, where);
  c.max_position_embeddings = json_integer_or(json, "max_position_embeddings", d.max_position_embeddings, where);
  c.word_embed_proj_dim = c.hidden_size;
  c.norm = NormKind::RMSNorm;
  c.norm_eps = json.value("rms_norm_eps", d.rms_norm_eps);
  c.positions = PositionKind::Rotary;
  c.rope_theta = json.value("rope_theta", 10000.0);
  c.tie_word_embeddings = json.value("tie_word_embeddings", d.tie_word_embeddings);
  auto token_id = [&](const char* key, int32_t fallback) {
    if (!json.contains(key) || json[key].is_null()) return fallback;
    const nlohmann::json& value = json[key];
    if (value.is_array() && value.empty()) return fallback;
    const nlohmann::json& id = value.is_array() ? value[0] : value;  // LLaMA-3.1: a list of eos ids
    return static_cast<int32_t>(json_integer(id, where, key, -1, kMaxTokenIds - 1));
  };
  c.bos_token_id = token_id("bos_token_id", d.bos_token_id);
  c.eos_token_id = token_id("eos_token_id", d.eos_token_id);
  return c;
}

RopeScaling parse_rope_scaling(const nlohmann::json& json, const std::string& where,
                               const std::vector<std::string>& supported) {
  RopeScaling result;
  if (!json.contains("rope_scaling") || json["rope_scaling"].is_null()) return result;
  const auto& scaling = json["rope_scaling"];
  if (!scaling.is_object()) fail("{}: rope_scaling must be an object or null", where);
  const std::string type = scaling.value("rope_type", scaling.value("type", "default"));
  if (type == "default") return result;
  if (std::find(supported.begin(), supported.end(), type) == supported.end())
    fail("{}: rope_scaling type '{}' is not supported for model_type '{}' (supported: {})", where, type,
         json.value("model_type", ""), supported.empty() ? std::string("none") : fmt::format("{}", fmt::join(supported, ", ")));
  result.type = type;
  result.factor = scaling.value("factor", 1.0);
  if (type == "llama3") {
    result.low_freq_factor = scaling.value("low_freq_factor", 1.0);
    result.high_freq_factor = scaling.value("high_freq_factor", 4.0);
    result.original_max_position_embeddings = json_integer_or(scaling, "original_max_position_embeddings", 8192, where);
    if (result.high_freq_factor <= result.low_freq_factor)
      fail("{}: rope_scaling high_freq_factor must exceed low_freq_factor", where);
  }
  if (!(result.factor > 0)) fail("{}: rope_scaling factor must be positive", where);
  return result;
}

std::string require_activation(const nlohmann::json& json, const std::string& key, const std::string& fallback,
                               const std::vector<std::string>& supported, const std::string& family,
                               const std::string& where) {
  const std::string activation = json.contains(key) && !json[key].is_null() ? json[key].get<std::string>() : fallback;
  if (std::find(supported.begin(), supported.end(), activation) == supported.end())
    fail("{}: {} '{}' is not supported for {} (supported: {})", where, key, activation, family,
         fmt::format("{}", fmt::join(supported, ", ")));
  return activation;
}

int64_t parse_sliding_window(const nlohmann::json& json, const std::string& where, int64_t fallback) {
  if (!json.contains("sliding_window")) return fallback;
  if (json["sliding_window"].is_null()) return 0;
  return json_integer(json["sliding_window"], where, "sliding_window", 1, int64_t{1} << 31);
}

}  // namespace cq
