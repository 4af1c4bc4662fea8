// tokenizer.model: a SentencePiece model run by libsentencepiece itself, so ids are the
// library's by construction. BOS/EOS follow tokenizer_config.json (add_bos_token default
// true, add_eos_token default false), as transformers' LlamaTokenizer does.
#include <sentencepiece_processor.h>

#include "tokenizer/tokenizer_files.h"
#include "tokenizer/tokenizer_formats.h"
#include "util/error.h"

namespace cq {
namespace {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::filesystem::path& model_dir) : path_(model_dir / "tokenizer.model") {
    if (!std::filesystem::exists(path_)) fail("{}: file not found", path_.string());
    // Read here (bounded by the tokenizer-file limit) rather than by the library, which reads any size.
    if (const auto status = processor_.LoadFromSerializedProto(read_text_file(path_, kMaxConfigFileBytes)); !status.ok()) {
      fail("{}: not a usable SentencePiece model ({})", path_.string(), status.ToString());
    }
    const TokenizerConfig config = read_tokenizer_config(model_dir);
    bos_id_ = piece_id(config.bos_token, processor_.bos_id());
    eos_id_ = piece_id(config.eos_token, processor_.eos_id());
    add_bos_ = config.add_bos_token.value_or(true) && bos_id_ >= 0;
    add_eos_ = config.add_eos_token.value_or(false) && eos_id_ >= 0;
  }

  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const override {
    std::vector<int> pieces;
    if (const auto status = processor_.Encode(text, &pieces); !status.ok()) {
      fail("{}: encode failed ({})", path_.string(), status.ToString());
    }
    std::vector<int32_t> ids;
    ids.reserve(pieces.size() + 2);
    if (add_special_tokens && add_bos_) ids.push_back(bos_id_);
    ids.insert(ids.end(), pieces.begin(), pieces.end());
    if (add_special_tokens && add_eos_) ids.push_back(eos_id_);
    return ids;
  }

  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const override {
    // The library drops control tokens (<s>, </s>); to keep them, decode the runs between
    // them and put their piece text in between, as transformers' slow tokenizer does.
    std::string text;
    std::vector<int> run;
    const auto flush = [&] {
      if (run.empty()) return;
      std::string decoded;
      if (const auto status = processor_.Decode(run, &decoded); !status.ok()) {
        fail("{}: decode failed ({})", path_.string(), status.ToString());
      }
      text += decoded;
      run.clear();
    };
    for (const int32_t id : ids) {
      if (id < 0 || id >= processor_.GetPieceSize()) fail("decode: token id {} is not in the vocabulary", id);
      if (processor_.IsControl(id)) {
        if (skip_special_tokens) continue;
        flush();
        text += processor_.IdToPiece(id);
        continue;
      }
      run.push_back(id);
    }
    flush();
    return text;
  }

  int32_t bos_id() const override { return bos_id_; }
  int32_t eos_id() const override { return eos_id_; }
  int64_t vocab_size() const override { return processor_.GetPieceSize(); }
  std::string kind() const override { return "tokenizer.model (SentencePiece)"; }

 private:
  int32_t piece_id(const std::optional<std::string>& piece, int fallback) const {
    if (!piece) return fallback;
    const int id = processor_.PieceToId(*piece);
    return id == processor_.unk_id() && *piece != processor_.IdToPiece(id) ? fallback : id;
  }

  std::filesystem::path path_;
  sentencepiece::SentencePieceProcessor processor_;
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  bool add_bos_ = true;
  bool add_eos_ = false;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_model(const std::filesystem::path& model_dir) {
  return std::make_unique<SentencePieceTokenizer>(model_dir);
}

}  // namespace cq
