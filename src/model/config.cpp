#include "model/config.h"

#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/limits.h"
#include "util/text_file.h"

namespace cq {

namespace {

struct FamilyRow {
  const char* model_type;
  const char* name;  // what `cq info` prints
  Family family;
  ModelConfig (*parse)(const nlohmann::json&, const std::string&);
  TensorNames (*names)();
};

// One row per family: model_type → parser and tensor names.
const FamilyRow kFamilies[] = {
    {"opt", "opt", Family::OPT, parse_opt_config, opt_tensor_names},
    {"llama", "llama", Family::LLaMA, parse_llama_config, llama_tensor_names},
    {"mistral", "mistral", Family::Mistral, parse_mistral_config, llama_tensor_names},
    {"qwen2", "qwen2", Family::Qwen2, parse_qwen2_config, llama_tensor_names},
    {"phi3", "phi3", Family::Phi3, parse_phi3_config, phi3_tensor_names},
    {"gemma", "gemma", Family::Gemma, parse_gemma_config, llama_tensor_names},
};

const FamilyRow& family_row(Family family) {
  for (const FamilyRow& row : kFamilies)
    if (row.family == family) return row;
  fail("internal error: a family without a row");
}

}  // namespace

std::string supported_model_types() {
  std::string list;
  for (const FamilyRow& row : kFamilies) list += (list.empty() ? "" : ", ") + std::string(row.model_type);
  return list;
}

std::string ModelConfig::family_name() const { return family_row(family).name; }

ModelConfig load_model_config(const std::filesystem::path& model_dir) {
  const auto path = model_dir / "config.json";
  if (!std::filesystem::exists(path))
    fail("{}: cannot open (is '{}' a Hugging Face model directory?)", path.string(), model_dir.string());
  return parse_model_config(read_json_file(path), path.string());
}

ModelConfig parse_model_config(const nlohmann::json& json, const std::string& where) {
  if (!json.is_object()) fail("{}: not a JSON object", where);
  if (json.contains("model_type") && !json["model_type"].is_string())
    fail("{}: model_type must be a string (got {})", where, json["model_type"].dump());
  const std::string type = json.value("model_type", "");
  ModelConfig config;
  try {
    const FamilyRow* row = nullptr;
    for (const FamilyRow& candidate : kFamilies)
      if (type == candidate.model_type) row = &candidate;
    if (row == nullptr) fail("{}: model_type '{}' is not supported (supported: {})", where, type, supported_model_types());
    config = row->parse(json, where);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: bad field type: {}", where, e.what());
  }
  auto require_positive = [&](int64_t value, const char* field) {
    if (value <= 0 || value > (int64_t{1} << 31)) fail("{}: {} must be a positive integer (got {})", where, field, value);
  };
  require_positive(config.vocab_size, "vocab_size");
  if (config.vocab_size > kMaxTokenIds)
    fail("{}: vocab_size {} is beyond the limit of {} token ids", where, config.vocab_size, kMaxTokenIds);
  require_positive(config.hidden_size, "hidden_size");
  require_positive(config.intermediate_size, "intermediate_size");
  require_positive(config.num_layers, "num_hidden_layers");
  require_positive(config.num_heads, "num_attention_heads");
  require_positive(config.num_kv_heads, "num_key_value_heads");
  require_positive(config.head_dim, "head_dim");
  require_positive(config.max_position_embeddings, "max_position_embeddings");
  require_positive(config.word_embed_proj_dim, "word_embed_proj_dim");
  if (config.num_heads % config.num_kv_heads != 0)
    fail("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", where, config.num_heads,
         config.num_kv_heads);
  if (config.positions == PositionKind::Rotary && config.head_dim % 2 != 0)
    fail("{}: rotary embeddings need an even head_dim (got {})", where, config.head_dim);
  return config;
}

TensorNames tensor_names(const ModelConfig& config) {
  return family_row(config.family).names();
}

}  // namespace cq
