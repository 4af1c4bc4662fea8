#pragma once
// The BPE merge engine shared by vocab.json + merges.txt and tokenizer.json: a word is
// split into characters and adjacent pairs are merged lowest merge rank first (leftmost
// on ties) with a priority queue over a linked list of symbols, the way the Rust
// `tokenizers` crate does it. Results are cached per word.
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "util/limits.h"  // kMaxTokenIds

namespace cq {

struct BpeOptions {
  bool ignore_merges = false;  // a word that is itself in the vocabulary is one token
  bool byte_fallback = false;  // unknown characters become <0xXX> byte tokens
  bool fuse_unk = false;       // consecutive unknown characters become one unk token
  std::string unk_token{};     // "": none, an unknown character is then an error
};


class BpeModel {
 public:
  // `source` names the file in error messages. Merges are (left, right) token pairs in
  // rank order; both parts and their concatenation must be in the vocabulary.
  BpeModel(std::vector<std::pair<std::string, int32_t>> vocab,
           const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options,
           const std::string& source);

  // Appends the ids of one pre-tokenized word (already byte-level mapped if the
  // vocabulary is byte-level).
  void encode_word(std::string_view word, std::vector<int32_t>& ids) const;

  int32_t find(std::string_view token) const;   // -1 when absent
  const std::string* token(int32_t id) const;   // nullptr when absent
  int32_t max_id() const { return static_cast<int32_t>(id_to_token_.size()) - 1; }

 private:
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct Merge {
    int32_t rank;
    int32_t merged_id;
  };
  static uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  const Merge* find_merge(int32_t left, int32_t right) const;
  std::vector<int32_t> initial_symbols(std::string_view word) const;
  void merge_symbols(std::vector<int32_t>& symbols) const;

  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> token_to_id_;
  std::vector<std::string> id_to_token_;  // "" for ids that have no token
  std::unordered_map<uint64_t, Merge> merges_;
  BpeOptions options_;
  int32_t unk_id_ = -1;
  std::string source_;

  // Words repeat a lot in text; the cache makes encoding mostly hash lookups.
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;
};

}  // namespace cq
