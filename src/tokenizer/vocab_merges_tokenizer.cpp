// vocab.json + merges.txt: GPT-2's byte-level BPE, as OPT checkpoints ship it.
// Special tokens are cut out of the text first and BOS follows tokenizer_config.json,
// like transformers' GPT2Tokenizer; with no setting, an OPT-style vocabulary (one that
// has "</s>") prepends "</s>" as BOS and a GPT-2 one adds nothing.
#include <set>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer_files.h"
#include "tokenizer/tokenizer_formats.h"
#include "tokenizer/unicode.h"
#include "util/error.h"

namespace cq {
namespace {

std::vector<std::pair<std::string, int32_t>> read_vocab_json(const std::filesystem::path& path) {
  const nlohmann::json json = read_json_file(path);
  if (!json.is_object()) fail("{}: expected an object mapping tokens to ids", path.string());
  std::vector<std::pair<std::string, int32_t>> vocab;
  vocab.reserve(json.size());
  for (const auto& [token, id] : json.items()) {
    if (!id.is_number_integer()) fail("{}: the id of \"{}\" is not an integer", path.string(), token);
    if (!id.is_number_unsigned() || id.get<uint64_t>() >= static_cast<uint64_t>(kMaxTokenIds))
      fail("{}: token \"{}\" has id {}, outside [0, {})", path.string(), token, id.dump(), kMaxTokenIds);
    vocab.emplace_back(token, static_cast<int32_t>(id.get<uint64_t>()));
  }
  return vocab;
}

std::vector<std::pair<std::string, std::string>> read_merges_txt(const std::filesystem::path& path) {
  const std::string text = read_text_file(path, kMaxConfigFileBytes);
  std::vector<std::pair<std::string, std::string>> merges;
  size_t line_number = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || (line_number == 1 && line.starts_with("#version"))) continue;
    const size_t space = line.find(' ');
    if (space == std::string_view::npos || space == 0 || space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string_view::npos) {
      fail("{}:{}: expected two tokens separated by one space", path.string(), line_number);
    }
    merges.emplace_back(std::string(line.substr(0, space)), std::string(line.substr(space + 1)));
  }
  return merges;
}

class VocabMergesTokenizer final : public Tokenizer {
 public:
  explicit VocabMergesTokenizer(const std::filesystem::path& model_dir) {
    const auto vocab_path = model_dir / "vocab.json";
    model_ = std::make_unique<BpeModel>(read_vocab_json(vocab_path), read_merges_txt(model_dir / "merges.txt"),
                                        BpeOptions{}, vocab_path.string());
    const TokenizerConfig config = read_tokenizer_config(model_dir);
    const bool opt_style = model_->find("</s>") >= 0;
    const std::string default_token = opt_style ? "</s>" : "<|endoftext|>";
    bos_id_ = model_->find(config.bos_token.value_or(default_token));
    eos_id_ = model_->find(config.eos_token.value_or(default_token));
    add_bos_ = config.add_bos_token.value_or(opt_style) && bos_id_ >= 0;
    add_eos_ = config.add_eos_token.value_or(false) && eos_id_ >= 0;
    clean_up_ = config.clean_up_tokenization_spaces;

    std::set<std::string> special_texts = {config.bos_token.value_or(default_token),
                                           config.eos_token.value_or(default_token),
                                           config.unk_token.value_or(default_token)};
    if (opt_style) special_texts.insert(config.pad_token.value_or("<pad>"));
    if (config.pad_token) special_texts.insert(*config.pad_token);
    special_texts.insert(config.additional_special_tokens.begin(), config.additional_special_tokens.end());
    std::vector<AddedToken> specials;
    for (const std::string& text : special_texts) {
      if (const int32_t id = model_->find(text); id >= 0) {
        specials.push_back({.content = text, .id = id, .special = true});
        special_ids_.insert(id);
      }
    }
    splitter_ = AddedTokenSplitter(std::move(specials));
  }

  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const override {
    std::vector<int32_t> ids;
    if (add_special_tokens && add_bos_) ids.push_back(bos_id_);
    std::vector<std::string_view> pieces;
    std::string mapped;
    for (const auto& segment : splitter_.split(text)) {
      if (segment.id >= 0) {
        ids.push_back(segment.id);
        continue;
      }
      pieces.clear();
      split_pretokens(SplitPattern::kGpt2, segment.text, pieces);
      for (const std::string_view piece : pieces) {
        mapped.clear();
        byte_level::append_encoded(mapped, piece);
        model_->encode_word(mapped, ids);
      }
    }
    if (add_special_tokens && add_eos_) ids.push_back(eos_id_);
    return ids;
  }

  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const override {
    std::string bytes;
    for (const int32_t id : ids) {
      const std::string* token = model_->token(id);
      if (token == nullptr) fail("decode: token id {} is not in the vocabulary", id);
      if (skip_special_tokens && special_ids_.contains(id)) continue;
      byte_level::append_decoded(bytes, *token);
    }
    std::string text = unicode::to_valid_utf8(bytes);
    return clean_up_ ? clean_up_tokenization(std::move(text)) : text;
  }

  int32_t bos_id() const override { return bos_id_; }
  int32_t eos_id() const override { return eos_id_; }
  int64_t vocab_size() const override { return int64_t{model_->max_id()} + 1; }
  std::string kind() const override { return "vocab.json + merges.txt (byte-level BPE)"; }

 private:
  std::unique_ptr<BpeModel> model_;
  AddedTokenSplitter splitter_;
  std::set<int32_t> special_ids_;
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  bool add_bos_ = false;
  bool add_eos_ = false;
  bool clean_up_ = false;
};

}  // namespace

std::unique_ptr<Tokenizer> load_vocab_and_merges(const std::filesystem::path& model_dir) {
  return std::make_unique<VocabMergesTokenizer>(model_dir);
}

}  // namespace cq
