#pragma once
// Reading the files of a tokenizer directory: JSON with errors that name the file, and
// the settings of tokenizer_config.json / special_tokens_map.json all formats share.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/text_file.h"  // read_text_file, read_json_file

namespace cq {

struct TokenizerConfig {
  std::optional<bool> add_bos_token;  // unset: the format's own default
  std::optional<bool> add_eos_token;
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
  std::optional<std::string> unk_token;
  std::optional<std::string> pad_token;
  std::vector<std::string> additional_special_tokens;
  // transformers' decode() then removes spaces before punctuation (" ." -> ".").
  bool clean_up_tokenization_spaces = false;
};

// Reads model_dir/tokenizer_config.json and, for tokens it leaves unset,
// special_tokens_map.json. Missing files give defaults; malformed ones throw.
TokenizerConfig read_tokenizer_config(const std::filesystem::path& model_dir);

// transformers' clean_up_tokenization.
std::string clean_up_tokenization(std::string text);

}  // namespace cq
