#include "tokenizer/tokenizer_files.h"

#include "util/error.h"

namespace cq {
namespace {

// A special token is either a string or an AddedToken object {"content": ...}.
std::optional<std::string> token_content(const nlohmann::json& value, const std::filesystem::path& path,
                                         const char* key) {
  if (value.is_null()) return std::nullopt;
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object() && value.contains("content") && value["content"].is_string()) {
    return value["content"].get<std::string>();
  }
  fail("{}: \"{}\" must be a string or an object with \"content\"", path.string(), key);
}

void read_special_tokens(const nlohmann::json& json, const std::filesystem::path& path, TokenizerConfig& config) {
  const std::pair<const char*, std::optional<std::string>*> fields[] = {
      {"bos_token", &config.bos_token},
      {"eos_token", &config.eos_token},
      {"unk_token", &config.unk_token},
      {"pad_token", &config.pad_token},
  };
  for (const auto& [key, target] : fields) {
    if (!target->has_value() && json.contains(key)) *target = token_content(json[key], path, key);
  }
  if (config.additional_special_tokens.empty() && json.contains("additional_special_tokens")) {
    const auto& list = json["additional_special_tokens"];
    if (!list.is_array()) fail("{}: \"additional_special_tokens\" must be a list", path.string());
    for (const auto& item : list) {
      if (auto content = token_content(item, path, "additional_special_tokens")) {
        config.additional_special_tokens.push_back(*content);
      }
    }
  }
}

std::optional<bool> optional_bool(const nlohmann::json& json, const std::filesystem::path& path, const char* key) {
  if (!json.contains(key) || json[key].is_null()) return std::nullopt;
  if (!json[key].is_boolean()) fail("{}: \"{}\" must be true or false", path.string(), key);
  return json[key].get<bool>();
}

}  // namespace

TokenizerConfig read_tokenizer_config(const std::filesystem::path& model_dir) {
  TokenizerConfig config;
  const auto config_path = model_dir / "tokenizer_config.json";
  if (std::filesystem::exists(config_path)) {
    const nlohmann::json json = read_json_file(config_path);
    if (!json.is_object()) fail("{}: expected a JSON object", config_path.string());
    config.add_bos_token = optional_bool(json, config_path, "add_bos_token");
    config.add_eos_token = optional_bool(json, config_path, "add_eos_token");
    config.clean_up_tokenization_spaces =
        optional_bool(json, config_path, "clean_up_tokenization_spaces").value_or(false);
    read_special_tokens(json, config_path, config);
  }
  const auto map_path = model_dir / "special_tokens_map.json";
  if (std::filesystem::exists(map_path)) {
    const nlohmann::json json = read_json_file(map_path);
    if (!json.is_object()) fail("{}: expected a JSON object", map_path.string());
    read_special_tokens(json, map_path, config);
  }
  return config;
}

std::string clean_up_tokenization(std::string text) {
  static constexpr std::pair<std::string_view, std::string_view> kReplacements[] = {
      {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
  };
  for (const auto& [from, to] : kReplacements) {
    std::string replaced;
    replaced.reserve(text.size());
    size_t pos = 0;
    for (size_t hit; (hit = text.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
      replaced.append(text, pos, hit - pos);
      replaced += to;
    }
    replaced.append(text, pos);
    text = std::move(replaced);
  }
  return text;
}

}  // namespace cq
