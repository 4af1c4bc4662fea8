// Small hand-worked tokenizer cases: UTF-8 and character classes, the two split
// patterns, the BPE engine and BOS rules on toy vocabularies, special tokens, and the
// errors for missing or unusable tokenizer files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/nfc.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"
#include "util/error.h"

namespace fs = std::filesystem;

namespace {

std::vector<std::string> split(cq::SplitPattern pattern, std::string_view text) {
  std::vector<std::string_view> pieces;
  cq::split_pretokens(pattern, text, pieces);
  return {pieces.begin(), pieces.end()};
}

// A scratch model directory, removed at the end of the test.
class ScratchDir {
 public:
  ScratchDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() /
            ("cq_tokenizer_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~ScratchDir() { fs::remove_all(path_); }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const fs::path& path() const { return path_; }
  void write(const std::string& name, const std::string& content) const {
    std::ofstream(path_ / name, std::ios::binary) << content;
  }

 private:
  fs::path path_;
};

// The cq::Error message of load_tokenizer(dir), or "" when it loads.
std::string load_error(const fs::path& dir) {
  try {
    cq::load_tokenizer(dir);
  } catch (const cq::Error& e) {
    return e.what();
  }
  return "";
}

// A byte-level toy vocabulary: "a", "b", "c", "Ġ" (space) and merges a+b, ab+c, a+a.
void write_toy_vocab(const ScratchDir& dir, bool opt_style) {
  nlohmann::json vocab = {{"a", 0}, {"b", 1}, {"c", 2}, {"\u0120", 3}, {"ab", 4}, {"abc", 5}, {"aa", 6}};
  if (opt_style) vocab["</s>"] = 7;
  dir.write("vocab.json", vocab.dump());
  dir.write("merges.txt", "#version: 0.2\na b\nab c\na a\n");
}

std::string minimal_tokenizer_json(const std::string& model_type) {
  nlohmann::json json = {
      {"version", "1.0"}, {"added_tokens", nlohmann::json::array()}, {"normalizer", nullptr},
      {"pre_tokenizer", nullptr}, {"post_processor", nullptr}, {"decoder", nullptr},
      {"model", {{"type", model_type}, {"vocab", {{"a", 0}, {"b", 1}, {"ab", 2}}}, {"merges", {"a b"}}}}};
  return json.dump();
}

}  // namespace

TEST(TokenizerUnicode, DecodesUtf8AndReplacesInvalidBytes) {
  EXPECT_EQ(cq::unicode::decode_utf8("\xC3\xA9", 0).code_point, U'é');
  EXPECT_EQ(cq::unicode::decode_utf8("\xF0\x9F\x98\x80", 0).code_point, U'\U0001F600');
  EXPECT_EQ(cq::unicode::decode_utf8("\xF0\x9F\x98\x80", 0).length, 4u);
  // Overlong, surrogate and truncated sequences: one byte at a time.
  EXPECT_EQ(cq::unicode::decode_utf8("\xC0\x80", 0).length, 1u);
  EXPECT_EQ(cq::unicode::decode_utf8("\xED\xA0\x80", 0).code_point, cq::unicode::kReplacementChar);
  EXPECT_EQ(cq::unicode::decode_utf8("\xE2\x82", 0).length, 1u);
  // Maximal subparts become one U+FFFD each (Unicode 3-7 / WHATWG / Rust lossy decoding).
  EXPECT_EQ(cq::unicode::to_valid_utf8("a\xE2\x82z"), "a\xEF\xBF\xBDz");
  EXPECT_EQ(cq::unicode::to_valid_utf8("\xC0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(cq::unicode::to_valid_utf8("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(cq::unicode::to_valid_utf8("\xF0\x9F\x98"), "\xEF\xBF\xBD");
  EXPECT_EQ(cq::unicode::to_valid_utf8("ok \xEF\xBF\xBD"), "ok \xEF\xBF\xBD");
}

TEST(TokenizerUnicode, CharacterClasses) {
  for (const char32_t c : {U'a', U'Z', U'é', U'Ж', U'λ', U'日', U'ア', U'한', U'ع', U'क', U'ª'}) {
    EXPECT_TRUE(cq::unicode::is_letter(c)) << static_cast<uint32_t>(c);
  }
  for (const char32_t c : {U'0', U'9', U'٣', U'१', U'½', U'²', U'Ⅻ'}) {
    EXPECT_TRUE(cq::unicode::is_number(c)) << static_cast<uint32_t>(c);
    EXPECT_FALSE(cq::unicode::is_letter(c)) << static_cast<uint32_t>(c);
  }
  for (const char32_t c : {U' ', U'\t', U'\n', U'\r', U'\v', U'\f', U'\u00A0', U'\u2003', U'\u3000', U'\u2028'}) {
    EXPECT_TRUE(cq::unicode::is_whitespace(c)) << static_cast<uint32_t>(c);
  }
  for (const char32_t c : {U'\u0301', U'\u200D', U'!', U'😀', U'\uFEFF'}) {
    EXPECT_FALSE(cq::unicode::is_letter(c) || cq::unicode::is_number(c) || cq::unicode::is_whitespace(c))
        << static_cast<uint32_t>(c);
  }
}

TEST(TokenizerPretokenizer, Gpt2Pattern) {
  using V = std::vector<std::string>;
  const auto gpt2 = cq::SplitPattern::kGpt2;
  EXPECT_EQ(split(gpt2, "Hello world"), (V{"Hello", " world"}));
  EXPECT_EQ(split(gpt2, "  Hi  there  "), (V{" ", " Hi", " ", " there", "  "}));
  EXPECT_EQ(split(gpt2, "I'm we'll DON'T"), (V{"I", "'m", " we", "'ll", " DON", "'", "T"}));
  EXPECT_EQ(split(gpt2, "a\n\nb"), (V{"a", "\n", "\n", "b"}));
  EXPECT_EQ(split(gpt2, "x 12345 !?"), (V{"x", " 12345", " !?"}));
  EXPECT_EQ(split(gpt2, "''s"), (V{"''", "s"}));
  EXPECT_EQ(split(gpt2, "日本語 テスト"), (V{"日本語", " テスト"}));
  EXPECT_EQ(split(gpt2, ""), V{});
}

TEST(TokenizerPretokenizer, Llama3Pattern) {
  using V = std::vector<std::string>;
  const auto llama3 = cq::SplitPattern::kLlama3;
  EXPECT_EQ(split(llama3, "a\r\n\n b\t\tc   "), (V{"a", "\r\n\n", " b", "\t", "\tc", "   "}));
  EXPECT_EQ(split(llama3, "1234567"), (V{"123", "456", "7"}));
  EXPECT_EQ(split(llama3, "I'M We'Ll"), (V{"I", "'M", " We", "'Ll"}));
  // " (" is not followed by a letter, so the optional prefix of `\p{L}+` does not apply.
  EXPECT_EQ(split(llama3, "((abc (x"), (V{"((", "abc", " (", "x"}));
  EXPECT_EQ(split(llama3, "(abc\t x"), (V{"(abc", "\t", " x"}));
  EXPECT_EQ(split(llama3, "!!\n\nabc"), (V{"!!\n\n", "abc"}));
  EXPECT_EQ(split(llama3, "x  \n  y"), (V{"x", "  \n", " ", " y"}));
  EXPECT_EQ(split(llama3, "\n"), (V{"\n"}));
}

TEST(TokenizerPretokenizer, RecognizesOnlyTheKnownPatterns) {
  EXPECT_EQ(cq::recognize_split_pattern(cq::kGpt2Pattern), cq::SplitPattern::kGpt2);
  EXPECT_EQ(cq::recognize_split_pattern(cq::kLlama3Pattern), cq::SplitPattern::kLlama3);
  EXPECT_FALSE(cq::recognize_split_pattern(R"(\w+|[^\w\s]+)").has_value());
}

TEST(TokenizerBpe, MergesByRankOnToyVocabulary) {
  const ScratchDir dir;
  write_toy_vocab(dir, /*opt_style=*/false);
  const auto tokenizer = cq::load_tokenizer(dir.path());
  EXPECT_EQ(tokenizer->encode("abc"), (std::vector<int32_t>{5}));
  EXPECT_EQ(tokenizer->encode("ab abc"), (std::vector<int32_t>{4, 3, 5}));
  // Equal ranks merge leftmost first: "aaa" -> "aa" + "a".
  EXPECT_EQ(tokenizer->encode("aaa"), (std::vector<int32_t>{6, 0}));
  // Rank decides, not position: "a b" (rank 0) beats "a a" (rank 2) in "aab".
  EXPECT_EQ(tokenizer->encode("aab"), (std::vector<int32_t>{0, 4}));
  EXPECT_EQ(tokenizer->decode(std::vector<int32_t>{4, 3, 5}), "ab abc");
  EXPECT_EQ(tokenizer->bos_id(), -1);  // GPT-2 style, no "</s>", no <|endoftext|>
}

TEST(TokenizerBpe, OptStyleVocabularyPrependsEndOfSentenceAsBos) {
  const ScratchDir dir;
  write_toy_vocab(dir, /*opt_style=*/true);
  const auto tokenizer = cq::load_tokenizer(dir.path());
  EXPECT_EQ(tokenizer->bos_id(), 7);
  EXPECT_EQ(tokenizer->encode("abc"), (std::vector<int32_t>{7, 5}));
  EXPECT_EQ(tokenizer->encode("abc", /*add_special_tokens=*/false), (std::vector<int32_t>{5}));
  // "</s>" in the text is the special token, and decode skips it unless asked not to.
  EXPECT_EQ(tokenizer->encode("ab</s>c", false), (std::vector<int32_t>{4, 7, 2}));
  EXPECT_EQ(tokenizer->decode(std::vector<int32_t>{7, 5}), "abc");
  EXPECT_EQ(tokenizer->decode(std::vector<int32_t>{7, 5}, /*skip_special_tokens=*/false), "</s>abc");
}

TEST(TokenizerBpe, TokenizerConfigDecidesBos) {
  const ScratchDir dir;
  write_toy_vocab(dir, /*opt_style=*/true);
  dir.write("tokenizer_config.json", R"({"add_bos_token": false, "bos_token": {"content": "</s>"}})");
  EXPECT_EQ(cq::load_tokenizer(dir.path())->encode("abc"), (std::vector<int32_t>{5}));
  dir.write("tokenizer_config.json", R"({"add_bos_token": true, "add_eos_token": true})");
  EXPECT_EQ(cq::load_tokenizer(dir.path())->encode("abc"), (std::vector<int32_t>{7, 5, 7}));
}

TEST(TokenizerJson, ByteFallbackUnknownsAndSentencePieceDecoding) {
  const ScratchDir dir;
  nlohmann::json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}, {"\u2581", 3}, {"h", 4}, {"i", 5}, {"\u2581h", 6},
                          {"\u2581hi", 7}};
  for (int byte = 0; byte < 256; ++byte) vocab[fmt::format("<0x{:02X}>", byte)] = 8 + byte;
  nlohmann::json json = {
      {"added_tokens", {{{"id", 1}, {"content", "<s>"}, {"special", true}}, {{"id", 2}, {"content", "</s>"}, {"special", true}}}},
      {"normalizer", {{"type", "Sequence"}, {"normalizers", {{{"type", "Prepend"}, {"prepend", "\u2581"}},
                                                             {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}}}}}},
      {"pre_tokenizer", nullptr},
      {"post_processor", {{"type", "TemplateProcessing"},
                          {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
                          {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
      {"decoder", {{"type", "Sequence"}, {"decoders", {{{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
                                                       {{"type", "ByteFallback"}}, {{"type", "Fuse"}},
                                                       {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
      {"model", {{"type", "BPE"}, {"unk_token", "<unk>"}, {"fuse_unk", true}, {"byte_fallback", true},
                 {"vocab", vocab}, {"merges", {"\u2581 h", "\u2581h i"}}}}};
  dir.write("tokenizer.json", json.dump());
  const auto tokenizer = cq::load_tokenizer(dir.path());
  // "é" is not in the vocabulary: its two UTF-8 bytes become <0xC3> <0xA9>.
  const std::vector<int32_t> ids = tokenizer->encode("hi é</s>");
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 7, 3, 8 + 0xC3, 8 + 0xA9, 2}));
  EXPECT_EQ(tokenizer->decode(ids), "hi é");
  EXPECT_EQ(tokenizer->decode(ids, /*skip_special_tokens=*/false), "<s> hi é</s>");
  // A lone byte that is not UTF-8 decodes to U+FFFD, as the references do.
  EXPECT_EQ(tokenizer->decode(std::vector<int32_t>{8 + 0xC3}), "\xEF\xBF\xBD");
  EXPECT_EQ(tokenizer->bos_id(), -1);  // no tokenizer_config.json names one
  EXPECT_THROW(tokenizer->decode(std::vector<int32_t>{100000}), cq::Error);
}

TEST(TokenizerErrors, MissingDirectoryOrFiles) {
  EXPECT_NE(load_error("/nonexistent/cq_model").find("/nonexistent/cq_model: not a directory"), std::string::npos);
  const ScratchDir dir;
  const std::string empty = load_error(dir.path());
  EXPECT_NE(empty.find(dir.path().string()), std::string::npos) << empty;
  EXPECT_NE(empty.find("no tokenizer found"), std::string::npos) << empty;
  dir.write("vocab.json", R"({"a": 0})");
  const std::string no_merges = load_error(dir.path());
  EXPECT_NE(no_merges.find("merges.txt"), std::string::npos) << no_merges;
}

TEST(TokenizerErrors, MalformedFilesNameTheFile) {
  const ScratchDir dir;
  dir.write("tokenizer.json", R"({"model": {"type": "BPE", "vocab": )");
  std::string message = load_error(dir.path());
  EXPECT_NE(message.find((dir.path() / "tokenizer.json").string()), std::string::npos) << message;
  EXPECT_NE(message.find("malformed JSON"), std::string::npos) << message;

  const ScratchDir gpt2;
  write_toy_vocab(gpt2, false);
  gpt2.write("merges.txt", "#version: 0.2\na b\nnot-a-pair\n");
  message = load_error(gpt2.path());
  EXPECT_NE(message.find((gpt2.path() / "merges.txt").string() + ":3"), std::string::npos) << message;

  const ScratchDir sp;
  sp.write("tokenizer.model", "this is not a protobuf");
  message = load_error(sp.path());
  EXPECT_NE(message.find((sp.path() / "tokenizer.model").string()), std::string::npos) << message;
}

TEST(TokenizerErrors, UnsupportedModelTypesAndPatterns) {
  for (const char* type : {"WordPiece", "Unigram", "WordLevel"}) {
    const ScratchDir dir;
    dir.write("tokenizer.json", minimal_tokenizer_json(type));
    const std::string message = load_error(dir.path());
    EXPECT_NE(message.find((dir.path() / "tokenizer.json").string()), std::string::npos) << message;
    EXPECT_NE(message.find(std::string("unsupported model type \"") + type + "\""), std::string::npos) << message;
  }
  const ScratchDir dir;
  nlohmann::json json = nlohmann::json::parse(minimal_tokenizer_json("BPE"));
  json["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "\\w+"}}}, {"behavior", "Isolated"}, {"invert", false}};
  dir.write("tokenizer.json", json.dump());
  std::string message = load_error(dir.path());
  EXPECT_NE(message.find("tokenizer.json: unsupported Split pre_tokenizer pattern"), std::string::npos) << message;
  json["pre_tokenizer"] = nullptr;
  json["normalizer"] = {{"type", "NFKC"}};
  dir.write("tokenizer.json", json.dump());
  message = load_error(dir.path());
  EXPECT_NE(message.find("tokenizer.json: unsupported normalizer type \"NFKC\""), std::string::npos) << message;
  json["normalizer"] = nullptr;
  json["added_tokens"] = {{{"id", "one"}, {"content", "<s>"}}};
  dir.write("tokenizer.json", json.dump());
  message = load_error(dir.path());
  EXPECT_NE(message.find("tokenizer.json: added token id must be an integer in [0, 16777215] (got \"one\")"), std::string::npos)
      << message;
  json["added_tokens"] = nlohmann::json::array();
  json["model"]["merges"] = {"a c"};
  dir.write("tokenizer.json", json.dump());
  message = load_error(dir.path());
  EXPECT_NE(message.find("not in the vocabulary"), std::string::npos) << message;
}

TEST(TokenizerSharedModels, Stories260kAndTinyOpt) {
  const char* shared_env = std::getenv("CQ_SHARED");
  const fs::path shared = shared_env != nullptr && *shared_env != '\0' ? fs::path(shared_env)
                                                                       : fs::path(CQ_SOURCE_DIR) / ".." / "shared";
  if (!fs::exists(shared / "models" / "stories260k")) {
    const char* require = std::getenv("CQ_REQUIRE_SHARED");
    if (require != nullptr && std::string(require) == "1") FAIL() << shared << " is missing";
    GTEST_SKIP() << shared << "/models/stories260k is missing (set CQ_SHARED)";
  }
  for (const char* model : {"stories260k", "tinyopt"}) {
    const auto tokenizer = cq::load_tokenizer(shared / "models" / model);
    EXPECT_EQ(tokenizer->kind(), "tokenizer.json (BPE, SentencePiece-style)") << model;
    EXPECT_EQ(tokenizer->bos_id(), 1) << model;
    EXPECT_EQ(tokenizer->eos_id(), 2) << model;
    EXPECT_EQ(tokenizer->vocab_size(), 512) << model;
    const std::vector<int32_t> ids = tokenizer->encode("Once upon a time, there was a little girl named Lily.");
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(ids.front(), 1);
    EXPECT_EQ(tokenizer->decode(ids), "Once upon a time, there was a little girl named Lily.");
  }
}

// Unicode NFC on hand-checked cases (UAX #15): composition, canonical reordering before
// composing, Hangul syllables, a composition exclusion, a singleton, a blocked mark.
TEST(Nfc, ComposesReordersAndRespectsExclusions) {
  EXPECT_EQ(cq::unicode::nfc("e\u0301"), "\u00e9");                      // e + acute -> é
  EXPECT_EQ(cq::unicode::nfc("a\u0302\u0323"), "\u1ead");                // reordered: a + dot below + circumflex -> ậ
  EXPECT_EQ(cq::unicode::nfc("\u1100\u1161\u11a8"), "\uac01");           // L V T -> 각
  EXPECT_EQ(cq::unicode::nfc("\u0958"), "\u0915\u093c");                 // excluded from composition
  EXPECT_EQ(cq::unicode::nfc("\u212b"), "\u00c5");                       // Angstrom sign -> Å
  EXPECT_EQ(cq::unicode::nfc("a\u0301\u0301"), "\u00e1\u0301");          // the second acute is blocked
  EXPECT_EQ(cq::unicode::nfc("plain ascii 123"), "plain ascii 123");
  EXPECT_EQ(cq::unicode::nfc("\xff"), "\ufffd");                          // invalid UTF-8 -> U+FFFD
}
