#pragma once
// One loader per tokenizer file format; load_tokenizer() picks among them.
#include <filesystem>
#include <memory>

#include "tokenizer/tokenizer.h"

namespace cq {

// tokenizer.json (Hugging Face `tokenizers`), model type BPE.
std::unique_ptr<Tokenizer> load_tokenizer_json(const std::filesystem::path& model_dir);
// tokenizer.model (SentencePiece), through libsentencepiece.
std::unique_ptr<Tokenizer> load_sentencepiece_model(const std::filesystem::path& model_dir);
// vocab.json + merges.txt (GPT-2 / OPT byte-level BPE).
std::unique_ptr<Tokenizer> load_vocab_and_merges(const std::filesystem::path& model_dir);

}  // namespace cq
