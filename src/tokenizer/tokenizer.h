#pragma once
// Text <-> token ids, exact to the reference implementations (HF tokenizers,
// SentencePiece, GPT-2's byte-level BPE). One implementation per file format.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace cq {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Text -> ids; with add_special_tokens, BOS/EOS are added as tokenizer_config.json
  // (or the format's own post-processor) says.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const = 0;
  virtual std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = true) const = 0;
  virtual int32_t bos_id() const = 0;  // -1 when the tokenizer has none
  virtual int32_t eos_id() const = 0;  // -1 when the tokenizer has none
  virtual int64_t vocab_size() const = 0;
  // Human-readable description of the format, e.g. "tokenizer.json (BPE, byte-level)".
  virtual std::string kind() const = 0;
};

// Loads the tokenizer of a Hugging Face model directory. Preference order (what
// transformers' AutoTokenizer does): tokenizer.json, then tokenizer.model, then
// vocab.json + merges.txt. Throws cq::Error naming the directory when none is usable.
std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& model_dir);

}  // namespace cq
