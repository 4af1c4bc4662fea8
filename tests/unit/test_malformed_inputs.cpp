// A table of malformed inputs across every parser a user's file reaches (safetensors file
// and index, config.json, tokenizer files, evaluation JSONL/CSV), each with the substring its
// cq::Error must contain ("" = must load). Complements test_safetensors.cpp's
// SafetensorsBadInput and test_cli.cpp (not repeated here). Also: truncation at every byte,
// resource limits and interrupted runs (docs/ROBUSTNESS.md).
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <istream>
#include <streambuf>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "eval/eval_data.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/limits.h"
#include "util/text_file.h"

extern char** environ;

namespace cq {
namespace {

using namespace std::string_literals;

std::string safetensors_bytes(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const uint64_t length = header.size();
  std::memcpy(out.data(), &length, 8);
  return out + header + data;
}

enum class Entry { Safetensors, Config, Tokenizer, Jsonl, Csv };

struct Malformed {
  const char* label;
  Entry entry;
  std::vector<std::pair<std::string, std::string>> files;  // name in the directory, bytes
  const char* expected;                                    // message substring; "" = loads
};

void PrintTo(const Malformed& m, std::ostream* out) { *out << m.label; }

// Runs the parsing entry point; returns the cq::Error message, or "" when it succeeded.
std::string outcome(Entry entry, const std::filesystem::path& dir) {
  try {
    switch (entry) {
      case Entry::Safetensors: { SafetensorsCheckpoint checkpoint(dir); break; }
      case Entry::Config: (void)load_model_config(dir); break;
      case Entry::Tokenizer: {
        const auto tokenizer = load_tokenizer(dir);
        const auto ids = tokenizer->encode("hello world");
        (void)tokenizer->decode(ids);
        break;
      }
      case Entry::Jsonl: (void)read_jsonl(dir / "data.jsonl"); break;
      case Entry::Csv: (void)parse_csv(read_text_file(dir / "data.csv"), dir / "data.csv"); break;
    }
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const std::string kTensor = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
const std::string kOpt =
    R"({"model_type":"opt","vocab_size":96,"hidden_size":32,"ffn_dim":64,"num_hidden_layers":2,)"
    R"("num_attention_heads":4,"max_position_embeddings":64,"word_embed_proj_dim":32,"do_layer_norm_before":true})";
std::string llama(const std::string& override_field) {
  return R"({"model_type":"llama","vocab_size":512,"intermediate_size":172,"num_hidden_layers":2,)"
         R"("num_attention_heads":8,"max_position_embeddings":512,)" +
         override_field + "}";
}
const std::string kMerges = "#version: 0.2\nh e\n";
const std::string kVocab = R"({"h":0,"e":1,"he":2,"l":3,"o":4})";

Malformed st(const char* label, std::string header, std::string data, const char* expected) {
  return {label, Entry::Safetensors, {{"model.safetensors", safetensors_bytes(header, data)}}, expected};
}
Malformed index(const char* label, std::string index_json, const char* expected) {
  return {label, Entry::Safetensors,
          {{"model.safetensors.index.json", std::move(index_json)},
           {"shard.safetensors", safetensors_bytes(kTensor, std::string(8, '\0'))}},
          expected};
}
Malformed config(const char* label, std::string text, const char* expected) {
  return {label, Entry::Config, {{"config.json", std::move(text)}}, expected};
}

std::vector<Malformed> table() {
  const std::string zeros8(8, '\0');
  return {
      // safetensors: structure and truncation at each boundary
      {"st_empty", Entry::Safetensors, {{"model.safetensors", ""}}, "shorter than the 8-byte header length"},
      {"st_seven_bytes", Entry::Safetensors, {{"model.safetensors", "\x02\0\0\0\0\0\0"s}}, "shorter than the 8-byte"},
      {"st_length_only", Entry::Safetensors, {{"model.safetensors", "\x02\0\0\0\0\0\0\0"s}}, "header claims 2 bytes but the file has 0"},
      {"st_length_2_63", Entry::Safetensors, {{"model.safetensors", "\0\0\0\0\0\0\0\x80{}"s}}, "header claims"},
      {"st_header_cut_mid_json", Entry::Safetensors, {{"model.safetensors", safetensors_bytes(kTensor.substr(0, 20), "")}}, "malformed safetensors header"},
      {"st_data_one_byte_short", Entry::Safetensors, {{"model.safetensors", safetensors_bytes(kTensor, std::string(7, '\0'))}}, "the file is truncated or corrupt"},
      st("st_header_is_array", "[]", "", "not a JSON object"),
      st("st_duplicate_tensor_name", R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", zeros8,
         "header lists tensor 'w' twice"),
      st("st_dtype_lowercase", R"({"w":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}})", zeros8, "dtype 'f32'"),
      st("st_dtype_f64", R"({"w":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", zeros8, "dtype 'F64'"),
      st("st_dtype_number", R"({"w":{"dtype":32,"shape":[2],"data_offsets":[0,8]}})", zeros8, "needs string dtype"),
      st("st_shape_not_array", R"({"w":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", zeros8, "shape array"),
      st("st_shape_fractional", R"({"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", zeros8, "negative or non-integer"),
      st("st_shape_overflow", R"({"w":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,8]}})", zeros8, "overflows"),
      st("st_three_offsets", R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}})", zeros8, "two data_offsets"),
      st("st_negative_offset", R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", zeros8, "non-negative integers"),
      st("st_offset_past_end", R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", zeros8, "outside the data section"),
      st("st_same_offsets_twice", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]}})", zeros8,
         "overlap"),
      st("st_non_utf8_name", "{\"w\xff\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", zeros8, "malformed safetensors header"),
      st("st_metadata_only", R"({"__metadata__":{"format":"pt"}})", "", ""),
      // index
      index("index_not_json", R"({"weight_map":)", "malformed JSON"),
      index("index_no_weight_map", R"({"metadata":{}})", "no \"weight_map\" object"),
      index("index_file_not_string", R"({"weight_map":{"w":3}})", "is not a file name"),
      index("index_path_traversal", R"({"weight_map":{"w":"../shard.safetensors"}})", "outside the directory"),
      index("index_missing_shard", R"({"weight_map":{"w":"absent.safetensors"}})", "cannot open"),
      index("index_tensor_not_in_shard", R"({"weight_map":{"w":"shard.safetensors","v":"shard.safetensors"}})", "which does not contain it"),
      // config.json
      config("config_truncated", kOpt.substr(0, kOpt.size() / 2), "malformed JSON"),
      config("config_array", "[1,2]", "not a JSON object"),
      config("config_unknown_type", R"({"model_type":"gpt2"})", "model_type 'gpt2' is not supported"),
      config("config_vocab_float_5e112", R"({"model_type":"llama","vocab_size":5.7e112})",
             "vocab_size must be an integer (got 5.7e+112)"),  // fuzz_config finding: UB in the cast
      config("config_hidden_fractional", R"({"model_type":"opt","hidden_size":64.5})", "hidden_size must be an integer (got 64.5)"),
      config("config_eos_list_of_float", R"({"model_type":"llama","eos_token_id":[1e300]})", "eos_token_id must be an integer in [-1, 16777215]"),
      config("config_vocab_1e9", R"({"model_type":"opt","vocab_size":1000000000,"hidden_size":32,"ffn_dim":64,)"
             R"("num_hidden_layers":2,"num_attention_heads":4,"max_position_embeddings":64})",
             "vocab_size 1000000000 is beyond the limit of 16777216 token ids"),
      config("config_negative_hidden", llama(R"("hidden_size":-64)"), "must be a positive integer"),
      config("config_string_hidden", llama(R"("hidden_size":"64")"), "hidden_size must be an integer (got \"64\")"),
      config("config_kv_heads_not_divisor", llama(R"("hidden_size":64,"num_key_value_heads":3)"), "not a multiple of num_key_value_heads"),
      config("config_non_utf8", "{\"model_type\":\"op\xff" "t\"}", "malformed JSON"),
      // Decision (docs/ROBUSTNESS.md): a UTF-8 BOM and CRLF line endings are accepted.
      config("config_bom_crlf_loads", "\xEF\xBB\xBF" + llama(R"("hidden_size":64)") + "\r\n", ""),
      config("config_crlf_pretty_loads", "{\r\n" + kOpt.substr(1) + "\r\n", ""),
      // tokenizers
      {"tok_json_not_json", Entry::Tokenizer, {{"tokenizer.json", "{\"model\": {"}}, "malformed JSON"},
      {"tok_json_id_1e9", Entry::Tokenizer,
       {{"tokenizer.json", R"({"model":{"type":"BPE","vocab":{"a":1000000000},"merges":[]}})"}}, "outside [0, 16777216)"},
      {"tok_vocab_negative_id", Entry::Tokenizer, {{"vocab.json", R"({"h":-1})"}, {"merges.txt", kMerges}}, "outside [0,"},
      {"tok_vocab_id_1e9", Entry::Tokenizer, {{"vocab.json", R"({"h":1000000000})"}, {"merges.txt", kMerges}}, "outside [0, 16777216)"},
      {"tok_vocab_id_string", Entry::Tokenizer, {{"vocab.json", R"({"h":"0"})"}, {"merges.txt", kMerges}}, "is not an integer"},
      {"tok_vocab_not_object", Entry::Tokenizer, {{"vocab.json", "[]"}, {"merges.txt", kMerges}}, "expected an object"},
      {"tok_vocab_without_merges", Entry::Tokenizer, {{"vocab.json", kVocab}}, "has vocab.json but not merges.txt"},
      {"tok_none", Entry::Tokenizer, {{"README.md", "x"}}, "no tokenizer found"},
      {"tok_config_bool_as_string", Entry::Tokenizer,
       {{"vocab.json", kVocab}, {"merges.txt", kMerges}, {"tokenizer_config.json", R"({"add_bos_token":"yes"})"}},
       "\"add_bos_token\" must be true or false"},
      {"tok_model_garbage", Entry::Tokenizer, {{"tokenizer.model", "\x0a\x05hello\xff\xff\xff"s}}, "tokenizer.model"},
      // evaluation data
      {"jsonl_bad_second_line", Entry::Jsonl, {{"data.jsonl", "{\"text\":\"a\"}\n{\"text\":\n"}}, "line 2: not a JSON record"},
      {"jsonl_array_record", Entry::Jsonl, {{"data.jsonl", "[1]\n"}}, "line 1: not a JSON object"},
      {"jsonl_non_utf8", Entry::Jsonl, {{"data.jsonl", "{\"text\":\"\xc3\x28\"}\n"}}, "line 1: not a JSON record"},
      {"jsonl_crlf_loads", Entry::Jsonl, {{"data.jsonl", "{\"text\":\"a\"}\r\n\r\n{\"text\":\"b\"}\r\n"}}, ""},
      {"csv_unterminated_quote", Entry::Csv, {{"data.csv", "a,b\n\"c,d\n"}}, "line 2: unterminated quoted CSV field"},
  };
}

class MalformedInput : public testing::TestWithParam<Malformed> {};

TEST_P(MalformedInput, IsRefusedWithItsMessage) {
  const Malformed& m = GetParam();
  const auto dir = test::scratch_dir(std::string("malformed-") + m.label);
  for (const auto& [name, bytes] : m.files) {
    std::ofstream out(dir / name, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  const std::string message = outcome(m.entry, dir);
  if (std::string(m.expected).empty()) {
    EXPECT_EQ(message, "") << m.label << " should load";
  } else {
    EXPECT_NE(message.find(m.expected), std::string::npos) << m.label << ": got '" << message << "'";
  }
}

INSTANTIATE_TEST_SUITE_P(Table, MalformedInput, testing::ValuesIn(table()),
                         [](const auto& test_info) { return std::string(test_info.param.label); });

// Every prefix of a valid file is refused with a cq::Error (never a crash or another exception).
void expect_every_prefix_refused(Entry entry, const std::string& name, const std::string& bytes, const char* label) {
  const auto dir = test::scratch_dir(std::string("malformed-prefix-") + label);
  for (size_t keep = 0; keep < bytes.size(); ++keep) {
    {
      std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
      out.write(bytes.data(), static_cast<std::streamsize>(keep));
    }
    std::string message;
    EXPECT_NO_THROW(message = outcome(entry, dir)) << label << " cut at " << keep;
    EXPECT_NE(message, "") << label << " cut at " << keep << " was accepted";
  }
}

TEST(MalformedInputTruncation, SafetensorsAtEveryByte) {
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  expect_every_prefix_refused(Entry::Safetensors, "model.safetensors", safetensors_bytes(header, std::string(8, '\1')), "st");
}

TEST(MalformedInputTruncation, ConfigAtEveryByte) {
  expect_every_prefix_refused(Entry::Config, "config.json", kOpt, "config");
}

TEST(MalformedInputTruncation, VocabJsonAtEveryByte) {
  const auto dir = test::scratch_dir("malformed-prefix-vocab");
  std::ofstream(dir / "merges.txt") << kMerges;
  for (size_t keep = 0; keep + 1 < kVocab.size(); ++keep) {
    std::ofstream(dir / "vocab.json", std::ios::trunc) << kVocab.substr(0, keep);
    std::string message;
    EXPECT_NO_THROW(message = outcome(Entry::Tokenizer, dir)) << keep;
    EXPECT_NE(message.find("vocab.json"), std::string::npos) << keep << ": " << message;
  }
}

// Resource limits: refused early, in bounded memory and time.
TEST(MalformedInputLimits, MillionsOfTensorsAreRefusedWhileParsing) {
  std::string header = "{";
  for (size_t i = 0; i <= kMaxTensorsPerFile + 1; ++i) header += fmt::format("\"{}\":0,", i);
  header += "\"end\":0}";
  const auto dir = test::scratch_dir("malformed-many-tensors");
  std::ofstream(dir / "model.safetensors", std::ios::binary) << safetensors_bytes(header, "");
  const auto start = std::chrono::steady_clock::now();
  EXPECT_NE(outcome(Entry::Safetensors, dir).find("header lists more than 1000000 tensors"), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(60));
}

// Files far beyond the size limits (util/limits.h), made sparse (nothing is written, no disk
// space used): each is refused from its size before it is read, naming the file.
struct Oversized {
  const char* label;
  Entry entry;
  const char* name;  // the oversized file
  uint64_t bytes;
  std::vector<std::pair<std::string, std::string>> others;  // small files beside it
  const char* expected;
};

void PrintTo(const Oversized& o, std::ostream* out) { *out << o.label; }

constexpr uint64_t kTenGB = uint64_t{10} << 30;

class OversizedInput : public testing::TestWithParam<Oversized> {};

TEST_P(OversizedInput, IsRefusedBeforeReading) {
  const Oversized& o = GetParam();
  const auto dir = test::scratch_dir(std::string("oversized-") + o.label);
  for (const auto& [name, bytes] : o.others) std::ofstream(dir / name, std::ios::binary) << bytes;
  std::ofstream(dir / o.name).close();
  std::filesystem::resize_file(dir / o.name, o.bytes);
  const auto start = std::chrono::steady_clock::now();
  const std::string message = outcome(o.entry, dir);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  std::filesystem::remove_all(dir);
  EXPECT_NE(message.find((dir / o.name).string()), std::string::npos) << message;
  EXPECT_NE(message.find(o.expected), std::string::npos) << o.label << ": got '" << message << "'";
}

INSTANTIATE_TEST_SUITE_P(
    Limits, OversizedInput,
    testing::ValuesIn(std::vector<Oversized>{
        {"config_json", Entry::Config, "config.json", kMaxConfigFileBytes + 1, {}, "is more than the 64 MiB accepted"},
        {"index_json", Entry::Safetensors, "model.safetensors.index.json", kTenGB, {}, "10 GiB (10737418240 bytes) is more than the 64 MiB"},
        {"tokenizer_json", Entry::Tokenizer, "tokenizer.json", kTenGB, {}, "is more than the 64 MiB accepted"},
        {"vocab_json", Entry::Tokenizer, "vocab.json", kTenGB, {{"merges.txt", kMerges}}, "is more than the 64 MiB accepted"},
        {"merges_txt", Entry::Tokenizer, "merges.txt", kTenGB, {{"vocab.json", kVocab}}, "is more than the 64 MiB accepted"},
        {"tokenizer_model", Entry::Tokenizer, "tokenizer.model", kTenGB, {}, "is more than the 64 MiB accepted"},
        {"tokenizer_config", Entry::Tokenizer, "tokenizer_config.json", kTenGB, {{"vocab.json", kVocab}, {"merges.txt", kMerges}},
         "is more than the 64 MiB accepted"},
        {"csv", Entry::Csv, "data.csv", kMaxTextFileBytes + 1, {}, "is more than the 1 GiB accepted"},
        // A JSONL file is streamed, so its size is no limit; its first line is.
        {"jsonl_10gb_line", Entry::Jsonl, "data.jsonl", kTenGB, {}, "line 1 is longer than 16 MiB"},
    }),
    [](const auto& test_info) { return std::string(test_info.param.label); });

// A stream that yields `prefix` and then the byte 'x' without end, keeping nothing.
class EndlessLine : public std::streambuf {
 public:
  explicit EndlessLine(std::string prefix) : prefix_(std::move(prefix)) {
    setg(prefix_.data(), prefix_.data(), prefix_.data() + prefix_.size());
  }
  int64_t served() const { return served_; }

 protected:
  int_type underflow() override {
    served_ += static_cast<int64_t>(chunk_.size());
    setg(chunk_.data(), chunk_.data(), chunk_.data() + chunk_.size());
    return traits_type::to_int_type('x');
  }

 private:
  std::string prefix_;
  std::string chunk_ = std::string(1 << 16, 'x');
  int64_t served_ = 0;
};

TEST(MalformedInputLimits, EndlessJsonlLineIsRefusedAtTheLimit) {
  EndlessLine source("{\"text\": \"a\"}\n\n{\"text\": \"");
  std::istream in(&source);
  try {
    (void)read_jsonl(in, "endless.jsonl");
    ADD_FAILURE() << "an endless line was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("endless.jsonl: line 3 is longer than 16 MiB"), std::string::npos) << e.what();
  }
  EXPECT_LE(source.served(), kMaxJsonlLineBytes + (1 << 16));  // stopped at the limit
}

TEST(MalformedInputLimits, FileOfUnknownSizeIsRefusedWhileReading) {
  // /dev/zero has no size to check in advance (like a pipe): the limit applies while reading.
  try {
    (void)read_text_file("/dev/zero", 1 << 20);
    ADD_FAILURE() << "/dev/zero was read whole";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/dev/zero: "), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("is more than the 1 MiB accepted"), std::string::npos) << e.what();
  }
}

// Interrupted runs: SIGINT/SIGTERM during `cq ppl --json OUT` leave nothing under OUT (nor a
// temporary beside it) and the process dies of the signal after one explanatory line.
void interrupt_ppl(int signal_number, const char* label) {
  CQ_NEED_SHARED("models/tinyopt");
  const auto model = test::shared_dir() / "models" / "tinyopt";
  const auto dir = test::scratch_dir(std::string("interrupt-") + label);
  {
    std::ofstream text(dir / "long.txt");
    for (int i = 0; i < 200000; ++i) text << "the quick brown fox " << i << " jumps\n";
  }
  const char* env_bin = std::getenv("CQ_BIN");
  const std::string cq = env_bin && *env_bin ? env_bin : std::string(CQ_BINARY_DIR) + "/cq";
  const std::string out = (dir / "out.json").string();
  const std::string text = (dir / "long.txt").string();
  const std::string model_dir = model.string();
  std::vector<std::string> args = {cq, "ppl", "--model", model_dir, "--text", text, "--json", out};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  ::setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
  pid_t pid = 0;
  ASSERT_EQ(::posix_spawn(&pid, cq.c_str(), nullptr, nullptr, argv.data(), environ), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  ::kill(pid, signal_number);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    GTEST_SKIP() << "the run finished before the signal; nothing to check";
  }
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == signal_number) << "status " << status;
  EXPECT_FALSE(std::filesystem::exists(out));
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    EXPECT_EQ(entry.path().filename().string().find("out.json"), std::string::npos) << entry.path();
}

TEST(MalformedInputInterrupted, SigintDuringPplLeavesNoOutput) { interrupt_ppl(SIGINT, "int"); }
TEST(MalformedInputInterrupted, SigtermDuringPplLeavesNoOutput) { interrupt_ppl(SIGTERM, "term"); }

}  // namespace
}  // namespace cq
