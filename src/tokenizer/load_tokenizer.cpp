#include "tokenizer/tokenizer.h"

#include "tokenizer/tokenizer_formats.h"
#include "util/error.h"

namespace cq {

std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& model_dir) {
  if (!std::filesystem::is_directory(model_dir)) fail("{}: not a directory", model_dir.string());
  if (std::filesystem::exists(model_dir / "tokenizer.json")) return load_tokenizer_json(model_dir);
  if (std::filesystem::exists(model_dir / "tokenizer.model")) return load_sentencepiece_model(model_dir);
  const bool has_vocab = std::filesystem::exists(model_dir / "vocab.json");
  const bool has_merges = std::filesystem::exists(model_dir / "merges.txt");
  if (has_vocab && has_merges) return load_vocab_and_merges(model_dir);
  if (has_vocab != has_merges) {
    fail("{}: has {} but not {}", model_dir.string(), has_vocab ? "vocab.json" : "merges.txt",
         has_vocab ? "merges.txt" : "vocab.json");
  }
  fail("{}: no tokenizer found (looked for tokenizer.json, tokenizer.model, vocab.json + merges.txt)",
       model_dir.string());
}

}  // namespace cq
