// tokenizer.json (Hugging Face `tokenizers`) with a BPE model, in both shapes found in
// LLaMA checkpoints: byte-level (LLaMA-3, GPT-2 style) and SentencePiece-style (LLaMA-2:
// "▁" for spaces, byte fallback). The pipeline is the Rust crate's: added tokens are cut
// out of the raw text, each remaining section is normalized and pre-tokenized, each
// piece goes through the BPE model, the post-processor adds BOS/EOS. Every component
// type or setting this file does not implement is an error naming the file, never a
// silent approximation.
#include <set>
#include <unordered_map>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/nfc.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer_files.h"
#include "tokenizer/tokenizer_formats.h"
#include "tokenizer/unicode.h"
#include "util/error.h"
#include "util/json_number.h"

namespace cq {
namespace {

using nlohmann::json;

void replace_all(std::string& text, std::string_view from, std::string_view to) {
  if (from.empty()) return;
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  for (size_t hit; (hit = text.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(text, pos, hit - pos);
    out += to;
  }
  out.append(text, pos);
  text = std::move(out);
}

struct NormalizerStep {
  enum class Kind {
    kPrepend,           // prepend `content` unless the text is empty
    kReplaceString,     // every `pattern` -> `content`
    kReplaceSpaceRuns,  // Regex " {2,}": every run of 2+ spaces -> `content`
    kReplaceEdgeSpaces, // Regex "\A +| +\z": leading and trailing spaces -> `content`
    kStrip,             // whitespace off the start (`left`) and/or end (`right`)
    kNfc,               // Unicode NFC (Qwen2)
  };
  Kind kind;
  std::string pattern{};
  std::string content{};
  bool left = false;
  bool right = false;

  void apply(std::string& text) const {
    switch (kind) {
      case Kind::kPrepend:
        if (!text.empty()) text.insert(0, content);
        break;
      case Kind::kNfc:
        text = unicode::nfc(text);
        break;
      case Kind::kReplaceString:
        replace_all(text, pattern, content);
        break;
      case Kind::kReplaceSpaceRuns: {
        std::string out;
        for (size_t pos = 0; pos < text.size();) {
          size_t end = pos;
          while (end < text.size() && text[end] == ' ') ++end;
          if (end - pos >= 2) {
            out += content;
            pos = end;
          } else {
            out += text[pos++];
          }
        }
        text = std::move(out);
        break;
      }
      case Kind::kReplaceEdgeSpaces: {
        const size_t first = text.find_first_not_of(' ');
        if (first == std::string::npos) {
          if (!text.empty()) text = content;
          break;
        }
        const size_t last = text.find_last_not_of(' ');
        std::string out = first > 0 ? content : std::string();
        out.append(text, first, last + 1 - first);
        if (last + 1 < text.size()) out += content;
        text = std::move(out);
        break;
      }
      case Kind::kStrip: {
        size_t begin = 0, end = text.size();
        while (left && begin < end) {
          const unicode::DecodedChar c = unicode::decode_utf8(text, begin);
          if (!unicode::is_whitespace(c.code_point)) break;
          begin += c.length;
        }
        while (right && end > begin) {
          size_t start = end - 1;
          while (start > begin && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
          if (!unicode::is_whitespace(unicode::decode_utf8(text, start).code_point)) break;
          end = start;
        }
        text = text.substr(begin, end - begin);
        break;
      }
    }
  }
};

struct Piece {
  std::string text;
  bool at_text_start;  // begins at offset 0 of the original text (Metaspace "first")
};

struct PreTokenizerStep {
  enum class Kind { kSplit, kByteLevel, kMetaspace };
  enum class Prepend { kAlways, kFirst, kNever };
  Kind kind;
  SplitPattern pattern = SplitPattern::kGpt2;  // kSplit; kByteLevel with use_regex
  bool use_regex = false;                      // kByteLevel
  bool add_prefix_space = false;               // kByteLevel
  std::string replacement{};                   // kMetaspace
  Prepend prepend = Prepend::kAlways;          // kMetaspace
  bool split = true;                           // kMetaspace

  void apply(std::vector<Piece>& pieces) const {
    std::vector<Piece> out;
    std::vector<std::string_view> parts;
    for (Piece& piece : pieces) {
      if (kind == Kind::kMetaspace) {
        replace_all(piece.text, " ", replacement);
        const bool wants_prefix = prepend == Prepend::kAlways || (prepend == Prepend::kFirst && piece.at_text_start);
        if (wants_prefix && !piece.text.starts_with(replacement)) piece.text.insert(0, replacement);
        if (!split) {
          out.push_back(std::move(piece));
          continue;
        }
        // Split before every replacement character (it stays with the word after it).
        size_t start = 0;
        for (size_t hit = piece.text.find(replacement, 1); hit != std::string::npos;
             hit = piece.text.find(replacement, hit + replacement.size())) {
          if (hit > start) out.push_back({piece.text.substr(start, hit - start), piece.at_text_start && start == 0});
          start = hit;
        }
        out.push_back({piece.text.substr(start), piece.at_text_start && start == 0});
        continue;
      }
      if (kind == Kind::kByteLevel && add_prefix_space && !piece.text.starts_with(' ')) piece.text = ' ' + piece.text;
      if (kind == Kind::kByteLevel && !use_regex) {
        out.push_back(std::move(piece));
        continue;
      }
      parts.clear();
      split_pretokens(pattern, piece.text, parts);
      for (size_t i = 0; i < parts.size(); ++i) out.push_back({std::string(parts[i]), piece.at_text_start && i == 0});
    }
    pieces = std::move(out);
  }
};

struct DecoderStep {
  enum class Kind { kByteLevel, kReplace, kByteFallback, kFuse, kStrip, kMetaspace };
  Kind kind;
  std::string pattern{}, content{};  // kReplace; kMetaspace uses pattern as the replacement
  char32_t strip_char = U' ';    // kStrip
  size_t start = 0, stop = 0;    // kStrip
  bool strip_first_prefix = true;  // kMetaspace: prepend_scheme != never

  void apply(std::vector<std::string>& tokens) const {
    switch (kind) {
      case Kind::kByteLevel: {
        std::string bytes;
        for (const std::string& token : tokens) byte_level::append_decoded(bytes, token);
        tokens.assign(1, unicode::to_valid_utf8(bytes));
        break;
      }
      case Kind::kReplace:
        for (std::string& token : tokens) replace_all(token, pattern, content);
        break;
      case Kind::kByteFallback:
        apply_byte_fallback(tokens);
        break;
      case Kind::kFuse: {
        std::string fused;
        for (const std::string& token : tokens) fused += token;
        tokens.assign(1, std::move(fused));
        break;
      }
      case Kind::kStrip:
        for (std::string& token : tokens) token = strip(token);
        break;
      case Kind::kMetaspace:
        for (size_t i = 0; i < tokens.size(); ++i) {
          // As in the Rust crate, the first token loses every replacement character.
          replace_all(tokens[i], pattern, i == 0 && strip_first_prefix ? "" : " ");
        }
        break;
    }
  }

 private:
  static int byte_token_value(const std::string& token) {
    if (token.size() != 6 || !token.starts_with("<0x") || token.back() != '>') return -1;
    int value = 0;
    for (size_t i = 3; i < 5; ++i) {
      const char c = token[i];
      const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
                        : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (digit < 0) return -1;
      value = value * 16 + digit;
    }
    return value;
  }

  // Runs of <0xXX> tokens become their bytes when those are valid UTF-8, else one
  // U+FFFD per byte (the Rust crate's rule).
  static void apply_byte_fallback(std::vector<std::string>& tokens) {
    std::vector<std::string> out;
    std::string run;
    size_t run_length = 0;
    const auto flush = [&] {
      if (run_length == 0) return;
      if (unicode::to_valid_utf8(run) == run) {
        out.push_back(run);
      } else {
        for (size_t i = 0; i < run_length; ++i) out.emplace_back("\xEF\xBF\xBD");
      }
      run.clear();
      run_length = 0;
    };
    for (std::string& token : tokens) {
      if (const int value = byte_token_value(token); value >= 0) {
        run += static_cast<char>(value);
        ++run_length;
      } else {
        flush();
        out.push_back(std::move(token));
      }
    }
    flush();
    tokens = std::move(out);
  }

  std::string strip(const std::string& token) const {
    std::string encoded;
    unicode::append_utf8(encoded, strip_char);
    size_t begin = 0, end = token.size();
    for (size_t i = 0; i < start && token.compare(begin, encoded.size(), encoded) == 0; ++i) begin += encoded.size();
    for (size_t i = 0; i < stop && end >= begin + encoded.size() &&
                       token.compare(end - encoded.size(), encoded.size(), encoded) == 0; ++i) {
      end -= encoded.size();
    }
    return token.substr(begin, end - begin);
  }
};

// Reads the parts of tokenizer.json; every helper names the file in its errors.
class TokenizerJsonReader {
 public:
  explicit TokenizerJsonReader(std::filesystem::path path) : path_(std::move(path)) {}

  [[noreturn]] void unsupported(std::string_view what, const json& node) const {
    fail("{}: unsupported {}: {}", path_.string(), what, node.dump().substr(0, 200));
  }

  const json& member(const json& node, const char* key, std::string_view where) const {
    if (!node.is_object() || !node.contains(key)) fail("{}: {} has no \"{}\"", path_.string(), where, key);
    return node[key];
  }

  std::string string_member(const json& node, const char* key, std::string_view where) const {
    const json& value = member(node, key, where);
    if (!value.is_string()) fail("{}: \"{}\" of {} must be a string", path_.string(), key, where);
    return value.get<std::string>();
  }

  int32_t token_id(const json& value, std::string_view what) const {
    return static_cast<int32_t>(json_integer(value, path_.string(), what, 0, kMaxTokenIds - 1));
  }

  bool bool_member(const json& node, const char* key, bool fallback) const {
    if (!node.contains(key) || node[key].is_null()) return fallback;
    if (!node[key].is_boolean()) fail("{}: \"{}\" must be true or false", path_.string(), key);
    return node[key].get<bool>();
  }

  // {"String": s} or {"Regex": r}: returns (is_regex, text).
  std::pair<bool, std::string> pattern(const json& node, std::string_view where) const {
    const json& p = member(node, "pattern", where);
    if (p.is_object() && p.contains("String") && p["String"].is_string()) return {false, p["String"].get<std::string>()};
    if (p.is_object() && p.contains("Regex") && p["Regex"].is_string()) return {true, p["Regex"].get<std::string>()};
    unsupported(std::string(where) + " pattern", p);
  }

  void normalizers(const json& node, std::vector<NormalizerStep>& steps) const {
    if (node.is_null()) return;
    const std::string type = string_member(node, "type", "normalizer");
    if (type == "Sequence") {
      for (const json& child : member(node, "normalizers", "Sequence normalizer")) normalizers(child, steps);
    } else if (type == "Prepend") {
      steps.push_back({NormalizerStep::Kind::kPrepend, "", string_member(node, "prepend", "Prepend")});
    } else if (type == "Replace") {
      const auto [is_regex, text] = pattern(node, "Replace normalizer");
      const std::string content = string_member(node, "content", "Replace normalizer");
      if (!is_regex) {
        steps.push_back({NormalizerStep::Kind::kReplaceString, text, content});
      } else if (text == " {2,}") {
        steps.push_back({NormalizerStep::Kind::kReplaceSpaceRuns, text, content});
      } else if (text == R"(\A +| +\z)") {
        steps.push_back({NormalizerStep::Kind::kReplaceEdgeSpaces, text, content});
      } else {
        fail("{}: unsupported Replace normalizer regex \"{}\" (supported: \" {{2,}}\", \"\\A +| +\\z\")",
             path_.string(), text);
      }
    } else if (type == "NFC") {
      steps.push_back({NormalizerStep::Kind::kNfc, "", ""});
    } else if (type == "Strip") {
      NormalizerStep step{NormalizerStep::Kind::kStrip, "", ""};
      step.left = bool_member(node, "strip_left", true);
      step.right = bool_member(node, "strip_right", true);
      steps.push_back(step);
    } else {
      unsupported("normalizer type \"" + type + "\"", node);
    }
  }

  void pre_tokenizers(const json& node, std::vector<PreTokenizerStep>& steps) const {
    if (node.is_null()) return;
    const std::string type = string_member(node, "type", "pre_tokenizer");
    if (type == "Sequence") {
      for (const json& child : member(node, "pretokenizers", "Sequence pre_tokenizer")) pre_tokenizers(child, steps);
    } else if (type == "Split") {
      const auto [is_regex, text] = pattern(node, "Split pre_tokenizer");
      const auto recognized = is_regex ? recognize_split_pattern(text) : std::nullopt;
      if (!recognized) {
        fail("{}: unsupported Split pre_tokenizer pattern \"{}\" (supported: the GPT-2, LLaMA-3 and Qwen2 regexes)",
             path_.string(), text);
      }
      if (node.value("behavior", "") != "Isolated" || bool_member(node, "invert", false)) {
        unsupported("Split pre_tokenizer behavior (only Isolated, invert false)", node);
      }
      steps.push_back({.kind = PreTokenizerStep::Kind::kSplit, .pattern = *recognized});
    } else if (type == "ByteLevel") {
      steps.push_back({.kind = PreTokenizerStep::Kind::kByteLevel,
                       .pattern = SplitPattern::kGpt2,
                       .use_regex = bool_member(node, "use_regex", true),
                       .add_prefix_space = bool_member(node, "add_prefix_space", true)});
    } else if (type == "Metaspace") {
      PreTokenizerStep step{.kind = PreTokenizerStep::Kind::kMetaspace};
      step.replacement = string_member(node, "replacement", "Metaspace pre_tokenizer");
      step.prepend = metaspace_prepend(node);
      step.split = bool_member(node, "split", true);
      steps.push_back(step);
    } else {
      unsupported("pre_tokenizer type \"" + type + "\"", node);
    }
  }

  // Older files say add_prefix_space (true = always), newer ones prepend_scheme.
  PreTokenizerStep::Prepend metaspace_prepend(const json& node) const {
    if (node.contains("prepend_scheme") && node["prepend_scheme"].is_string()) {
      const std::string scheme = node["prepend_scheme"].get<std::string>();
      if (scheme == "always") return PreTokenizerStep::Prepend::kAlways;
      if (scheme == "first") return PreTokenizerStep::Prepend::kFirst;
      if (scheme == "never") return PreTokenizerStep::Prepend::kNever;
      unsupported("Metaspace prepend_scheme", node);
    }
    return bool_member(node, "add_prefix_space", true) ? PreTokenizerStep::Prepend::kAlways
                                                       : PreTokenizerStep::Prepend::kNever;
  }

  void decoders(const json& node, std::vector<DecoderStep>& steps) const {
    const std::string type = string_member(node, "type", "decoder");
    if (type == "Sequence") {
      for (const json& child : member(node, "decoders", "Sequence decoder")) decoders(child, steps);
    } else if (type == "ByteLevel") {
      steps.push_back({.kind = DecoderStep::Kind::kByteLevel});
    } else if (type == "Replace") {
      const auto [is_regex, text] = pattern(node, "Replace decoder");
      if (is_regex) unsupported("Replace decoder regex", node);
      steps.push_back({.kind = DecoderStep::Kind::kReplace, .pattern = text,
                       .content = string_member(node, "content", "Replace decoder")});
    } else if (type == "ByteFallback") {
      steps.push_back({.kind = DecoderStep::Kind::kByteFallback});
    } else if (type == "Fuse") {
      steps.push_back({.kind = DecoderStep::Kind::kFuse});
    } else if (type == "Strip") {
      const std::string content = string_member(node, "content", "Strip decoder");
      const unicode::DecodedChar c = content.empty() ? unicode::DecodedChar{0, 0} : unicode::decode_utf8(content, 0);
      if (c.length != content.size() || content.empty()) unsupported("Strip decoder content (one character)", node);
      steps.push_back({.kind = DecoderStep::Kind::kStrip, .strip_char = c.code_point,
                       .start = node.value("start", size_t{0}), .stop = node.value("stop", size_t{0})});
    } else if (type == "Metaspace") {
      steps.push_back({.kind = DecoderStep::Kind::kMetaspace,
                       .pattern = string_member(node, "replacement", "Metaspace decoder"),
                       .strip_first_prefix = metaspace_prepend(node) != PreTokenizerStep::Prepend::kNever});
    } else {
      unsupported("decoder type \"" + type + "\"", node);
    }
  }

  std::vector<std::pair<std::string, std::string>> merges(const json& model) const {
    std::vector<std::pair<std::string, std::string>> pairs;
    const json& list = member(model, "merges", "model");
    if (!list.is_array()) fail("{}: model.merges must be a list", path_.string());
    pairs.reserve(list.size());
    for (const json& item : list) {
      if (item.is_string()) {  // "left right"
        const std::string text = item.get<std::string>();
        const size_t space = text.find(' ');
        if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos) {
          fail("{}: merge \"{}\" is not two tokens separated by one space", path_.string(), text);
        }
        pairs.emplace_back(text.substr(0, space), text.substr(space + 1));
      } else if (item.is_array() && item.size() == 2 && item[0].is_string() && item[1].is_string()) {
        pairs.emplace_back(item[0].get<std::string>(), item[1].get<std::string>());
      } else {
        unsupported("merge entry", item);
      }
    }
    return pairs;
  }

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

class TokenizerJson final : public Tokenizer {
 public:
  explicit TokenizerJson(const std::filesystem::path& model_dir) {
    const TokenizerJsonReader reader(model_dir / "tokenizer.json");
    const std::string source = reader.path().string();
    const json root = read_json_file(reader.path());
    if (!root.is_object()) fail("{}: expected a JSON object", source);

    const json& model = reader.member(root, "model", "tokenizer.json");
    const std::string model_type = model.value("type", std::string("BPE"));
    if (model_type != "BPE") {
      fail("{}: unsupported model type \"{}\" (only BPE is implemented)", source, model_type);
    }
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      if (model.contains(key) && !model[key].is_null() && model[key] != "") reader.unsupported(key, model[key]);
    }
    if (model.contains("dropout") && model["dropout"].is_number() && model["dropout"].get<double>() > 0.0) {
      fail("{}: BPE dropout is random; only dropout null or 0 is supported", source);
    }
    const json& vocab_json = reader.member(model, "vocab", "model");
    if (!vocab_json.is_object()) fail("{}: model.vocab must be an object", source);
    std::vector<std::pair<std::string, int32_t>> vocab;
    vocab.reserve(vocab_json.size());
    for (const auto& [token, id] : vocab_json.items()) {
      if (!id.is_number_integer()) fail("{}: the id of \"{}\" is not an integer", source, token);
      if (!id.is_number_unsigned() || id.get<uint64_t>() >= static_cast<uint64_t>(kMaxTokenIds))
      fail("{}: token \"{}\" has id {}, outside [0, {})", source, token, id.dump(), kMaxTokenIds);
    vocab.emplace_back(token, static_cast<int32_t>(id.get<uint64_t>()));
    }
    BpeOptions options{.ignore_merges = reader.bool_member(model, "ignore_merges", false),
                       .byte_fallback = reader.bool_member(model, "byte_fallback", false),
                       .fuse_unk = reader.bool_member(model, "fuse_unk", false)};
    if (model.contains("unk_token") && model["unk_token"].is_string()) options.unk_token = model["unk_token"].get<std::string>();
    model_ = std::make_unique<BpeModel>(std::move(vocab), reader.merges(model), std::move(options), source);

    read_added_tokens(reader, root);
    reader.normalizers(root.value("normalizer", json()), normalizers_);
    reader.pre_tokenizers(root.value("pre_tokenizer", json()), pre_tokenizers_);
    for (const PreTokenizerStep& step : pre_tokenizers_) byte_level_ |= step.kind == PreTokenizerStep::Kind::kByteLevel;
    if (root.contains("decoder") && !root["decoder"].is_null()) {
      has_decoder_ = true;
      reader.decoders(root["decoder"], decoders_);
    }
    read_post_processor(reader, root.value("post_processor", json()));

    const TokenizerConfig config = read_tokenizer_config(model_dir);
    bos_id_ = config.bos_token ? token_id(*config.bos_token) : -1;
    eos_id_ = config.eos_token ? token_id(*config.eos_token) : -1;
    // An explicit add_bos_token / add_eos_token rebuilds the template, as transformers'
    // LlamaTokenizerFast does; otherwise the file's post-processor decides.
    if (config.add_bos_token) prefix_ids_ = *config.add_bos_token && bos_id_ >= 0 ? std::vector{bos_id_} : std::vector<int32_t>{};
    if (config.add_eos_token) suffix_ids_ = *config.add_eos_token && eos_id_ >= 0 ? std::vector{eos_id_} : std::vector<int32_t>{};
    clean_up_ = config.clean_up_tokenization_spaces;
  }

  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const override {
    std::vector<int32_t> ids;
    if (add_special_tokens) ids = prefix_ids_;
    std::string mapped;
    for (const auto& raw : raw_added_.split(text)) {
      if (raw.id >= 0) {
        ids.push_back(raw.id);
        continue;
      }
      if (raw.text.empty()) continue;
      std::string normalized(raw.text);
      for (const NormalizerStep& step : normalizers_) step.apply(normalized);
      for (const auto& section : normalized_added_.split(normalized)) {
        if (section.id >= 0) {
          ids.push_back(section.id);
          continue;
        }
        if (section.text.empty()) continue;
        std::vector<Piece> pieces{{std::string(section.text), raw.offset == 0 && section.offset == 0}};
        for (const PreTokenizerStep& step : pre_tokenizers_) step.apply(pieces);
        for (const Piece& piece : pieces) {
          if (!byte_level_) {
            model_->encode_word(piece.text, ids);
            continue;
          }
          mapped.clear();
          byte_level::append_encoded(mapped, piece.text);
          model_->encode_word(mapped, ids);
        }
      }
    }
    if (add_special_tokens) ids.insert(ids.end(), suffix_ids_.begin(), suffix_ids_.end());
    return ids;
  }

  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const override {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (const int32_t id : ids) {
      if (skip_special_tokens && special_ids_.contains(id)) continue;
      if (const auto added = added_text_.find(id); added != added_text_.end()) {
        tokens.push_back(added->second);
      } else if (const std::string* token = model_->token(id)) {
        tokens.push_back(*token);
      } else {
        fail("decode: token id {} is not in the vocabulary", id);
      }
    }
    std::string text;
    if (!has_decoder_) {  // the Rust crate joins with spaces when there is no decoder
      for (size_t i = 0; i < tokens.size(); ++i) text += (i ? " " : "") + tokens[i];
    } else {
      for (const DecoderStep& step : decoders_) step.apply(tokens);
      for (const std::string& token : tokens) text += token;
    }
    return clean_up_ ? clean_up_tokenization(std::move(text)) : text;
  }

  int32_t bos_id() const override { return bos_id_; }
  int32_t eos_id() const override { return eos_id_; }
  int64_t vocab_size() const override { return int64_t{max_id_} + 1; }
  std::string kind() const override {
    return byte_level_ ? "tokenizer.json (BPE, byte-level)" : "tokenizer.json (BPE, SentencePiece-style)";
  }

 private:
  int32_t token_id(const std::string& text) const {
    for (const auto& [id, content] : added_text_) {
      if (content == text) return id;
    }
    return model_->find(text);
  }

  void read_added_tokens(const TokenizerJsonReader& reader, const json& root) {
    max_id_ = model_->max_id();
    std::vector<AddedToken> raw, normalized;
    for (const json& item : root.value("added_tokens", json::array())) {
      AddedToken token{.content = reader.string_member(item, "content", "added token"),
                       .id = reader.token_id(reader.member(item, "id", "added token"), "added token id"),
                       .special = reader.bool_member(item, "special", false),
                       .lstrip = reader.bool_member(item, "lstrip", false),
                       .rstrip = reader.bool_member(item, "rstrip", false),
                       .single_word = reader.bool_member(item, "single_word", false),
                       .normalized = reader.bool_member(item, "normalized", false)};
      added_text_[token.id] = token.content;
      if (token.special) special_ids_.insert(token.id);
      max_id_ = std::max(max_id_, token.id);
      (token.normalized ? normalized : raw).push_back(std::move(token));
    }
    raw_added_ = AddedTokenSplitter(std::move(raw));
    normalized_added_ = AddedTokenSplitter(std::move(normalized));
  }

  // The ids of a special token named in the post-processor.
  std::vector<int32_t> special_ids(const TokenizerJsonReader& reader, const json& processor, const std::string& name) const {
    if (processor.contains("special_tokens") && processor["special_tokens"].contains(name)) {
      return reader.member(processor["special_tokens"][name], "ids", "post_processor special token").get<std::vector<int32_t>>();
    }
    const int32_t id = token_id(name);
    if (id < 0) fail("{}: post_processor uses unknown token \"{}\"", reader.path().string(), name);
    return {id};
  }

  void read_post_processor(const TokenizerJsonReader& reader, const json& node) {
    if (node.is_null()) return;
    const std::string type = reader.string_member(node, "type", "post_processor");
    if (type == "Sequence") {
      for (const json& child : reader.member(node, "processors", "Sequence post_processor")) read_post_processor(reader, child);
    } else if (type == "ByteLevel") {
      // Only adjusts offsets; ids are unchanged.
    } else if (type == "TemplateProcessing") {
      prefix_ids_.clear();
      suffix_ids_.clear();
      bool seen_sequence = false;
      for (const json& item : reader.member(node, "single", "TemplateProcessing")) {
        if (item.contains("Sequence")) {
          seen_sequence = true;
        } else if (item.contains("SpecialToken")) {
          const auto ids = special_ids(reader, node, reader.string_member(item["SpecialToken"], "id", "SpecialToken"));
          auto& target = seen_sequence ? suffix_ids_ : prefix_ids_;
          target.insert(target.end(), ids.begin(), ids.end());
        } else {
          reader.unsupported("TemplateProcessing item", item);
        }
      }
    } else if (type == "BertProcessing" || type == "RobertaProcessing") {
      const json& cls = reader.member(node, "cls", type);
      const json& sep = reader.member(node, "sep", type);
      prefix_ids_ = {reader.token_id(cls.at(1), "cls id")};
      suffix_ids_ = {reader.token_id(sep.at(1), "sep id")};
    } else {
      reader.unsupported("post_processor type \"" + type + "\"", node);
    }
  }

  std::unique_ptr<BpeModel> model_;
  std::vector<NormalizerStep> normalizers_;
  std::vector<PreTokenizerStep> pre_tokenizers_;
  std::vector<DecoderStep> decoders_;
  bool has_decoder_ = false;
  bool byte_level_ = false;  // a ByteLevel pre-tokenizer: the model sees mapped bytes
  AddedTokenSplitter raw_added_;
  AddedTokenSplitter normalized_added_;
  std::unordered_map<int32_t, std::string> added_text_;
  std::set<int32_t> special_ids_;
  std::vector<int32_t> prefix_ids_, suffix_ids_;
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  int32_t max_id_ = -1;
  bool clean_up_ = false;
};

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer_json(const std::filesystem::path& model_dir) {
  try {
    return std::make_unique<TokenizerJson>(model_dir);
  } catch (const nlohmann::json::exception& e) {  // valid JSON, wrong shape (e.g. a string id)
    fail("{}: unexpected content ({})", (model_dir / "tokenizer.json").string(), e.what());
  }
}

}  // namespace cq
