#include "tokenizer/bpe.h"

#include <queue>

#include <fmt/format.h>

#include "tokenizer/unicode.h"
#include "util/error.h"

namespace cq {
namespace {

// Longer words (whole SentencePiece-style lines) rarely repeat; caching them only costs.
constexpr size_t kMaxCachedWordBytes = 256;
constexpr size_t kMaxCacheEntries = 1 << 16;

}  // namespace

BpeModel::BpeModel(std::vector<std::pair<std::string, int32_t>> vocab,
                   const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options,
                   const std::string& source)
    : options_(std::move(options)), source_(source) {
  token_to_id_.reserve(vocab.size());
  for (auto& [text, id] : vocab) {
    if (id < 0) fail("{}: token \"{}\" has negative id {}", source, text, id);
    if (id >= kMaxTokenIds) fail("{}: token \"{}\" has id {}, beyond the limit of {} ids", source, text, id, kMaxTokenIds);
    if (static_cast<size_t>(id) >= id_to_token_.size()) id_to_token_.resize(static_cast<size_t>(id) + 1);
    id_to_token_[static_cast<size_t>(id)] = text;
    token_to_id_.insert_or_assign(std::move(text), id);
  }
  merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    const int32_t left_id = find(left);
    const int32_t right_id = find(right);
    const int32_t merged_id = find(left + right);
    if (left_id < 0 || right_id < 0 || merged_id < 0) {
      fail("{}: merge {} \"{} {}\" uses a token that is not in the vocabulary", source, rank + 1, left, right);
    }
    // Like the references, a repeated pair keeps its last rank.
    merges_.insert_or_assign(pair_key(left_id, right_id), Merge{static_cast<int32_t>(rank), merged_id});
  }
  if (!options_.unk_token.empty()) {
    unk_id_ = find(options_.unk_token);
    if (unk_id_ < 0) fail("{}: unk_token \"{}\" is not in the vocabulary", source, options_.unk_token);
  }
}

int32_t BpeModel::find(std::string_view token) const {
  const auto it = token_to_id_.find(token);
  return it == token_to_id_.end() ? -1 : it->second;
}

const std::string* BpeModel::token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size()) return nullptr;
  const std::string& text = id_to_token_[static_cast<size_t>(id)];
  return text.empty() ? nullptr : &text;
}

const BpeModel::Merge* BpeModel::find_merge(int32_t left, int32_t right) const {
  const auto it = merges_.find(pair_key(left, right));
  return it == merges_.end() ? nullptr : &it->second;
}

std::vector<int32_t> BpeModel::initial_symbols(std::string_view word) const {
  std::vector<int32_t> symbols;
  symbols.reserve(word.size());
  bool unk_pending = false;
  const auto flush_unk = [&] {
    if (unk_pending) symbols.push_back(unk_id_);
    unk_pending = false;
  };
  for (size_t pos = 0; pos < word.size();) {
    const unicode::DecodedChar decoded = unicode::decode_utf8(word, pos);
    const std::string_view character = word.substr(pos, decoded.length);
    pos += decoded.length;
    if (const int32_t id = find(character); id >= 0) {
      flush_unk();
      symbols.push_back(id);
      continue;
    }
    if (options_.byte_fallback) {
      std::vector<int32_t> byte_ids;
      for (const char byte : character) {
        const int32_t id = find(fmt::format("<0x{:02X}>", static_cast<unsigned char>(byte)));
        if (id < 0) break;
        byte_ids.push_back(id);
      }
      if (byte_ids.size() == character.size()) {
        flush_unk();
        symbols.insert(symbols.end(), byte_ids.begin(), byte_ids.end());
        continue;
      }
    }
    if (unk_id_ < 0) {
      fail("{}: character U+{:04X} is not in the vocabulary and there is no unk_token", source_,
           static_cast<uint32_t>(decoded.code_point));
    }
    if (!options_.fuse_unk) flush_unk();
    unk_pending = true;
  }
  flush_unk();
  return symbols;
}

void BpeModel::merge_symbols(std::vector<int32_t>& symbols) const {
  if (symbols.size() < 2) return;
  struct Node {
    int32_t id;
    int32_t prev;
    int32_t next;  // -1 at the end
    bool merged_away;
  };
  struct Candidate {
    int32_t rank;
    int32_t pos;  // the left node; a merged symbol keeps its left node's position
    int32_t merged_id;
  };
  const auto runs_later = [](const Candidate& a, const Candidate& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(runs_later)> queue(runs_later);

  const auto count = static_cast<int32_t>(symbols.size());
  std::vector<Node> nodes(symbols.size());
  for (int32_t i = 0; i < count; ++i) {
    nodes[static_cast<size_t>(i)] = {symbols[static_cast<size_t>(i)], i - 1, i + 1 < count ? i + 1 : -1, false};
  }
  const auto push_if_mergeable = [&](int32_t pos) {
    const Node& left = nodes[static_cast<size_t>(pos)];
    if (left.next < 0) return;
    if (const Merge* merge = find_merge(left.id, nodes[static_cast<size_t>(left.next)].id)) {
      queue.push({merge->rank, pos, merge->merged_id});
    }
  };
  for (int32_t i = 0; i + 1 < count; ++i) push_if_mergeable(i);

  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Node& left = nodes[static_cast<size_t>(top.pos)];
    if (left.merged_away || left.next < 0) continue;
    Node& right = nodes[static_cast<size_t>(left.next)];
    // Stale entries (a side changed since the push) are recognised by the merge result,
    // as the Rust implementation does.
    const Merge* current = find_merge(left.id, right.id);
    if (current == nullptr || current->merged_id != top.merged_id) continue;
    left.id = top.merged_id;
    right.merged_away = true;
    left.next = right.next;
    if (left.next >= 0) nodes[static_cast<size_t>(left.next)].prev = top.pos;
    if (left.prev >= 0) push_if_mergeable(left.prev);
    push_if_mergeable(top.pos);
  }
  symbols.clear();
  for (int32_t i = 0; i >= 0; i = nodes[static_cast<size_t>(i)].next) symbols.push_back(nodes[static_cast<size_t>(i)].id);
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& ids) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    if (const int32_t id = find(word); id >= 0) {
      ids.push_back(id);
      return;
    }
  }
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    const std::lock_guard lock(cache_mutex_);
    if (const auto it = cache_.find(word); it != cache_.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> symbols = initial_symbols(word);
  merge_symbols(symbols);
  ids.insert(ids.end(), symbols.begin(), symbols.end());
  if (cacheable) {
    const std::lock_guard lock(cache_mutex_);
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();
    cache_.emplace(std::string(word), std::move(symbols));
  }
}

}  // namespace cq
