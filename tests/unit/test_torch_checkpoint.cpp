// PyTorch checkpoints (docs/ROBUSTNESS.md "PyTorch checkpoints"): the shared models saved with
// torch.save by tests/reference/torch_checkpoints.py at test time (single file, sharded, fp16,
// bf16, tied and strided views, base-model names) must give exactly their safetensors results;
// a malicious pickle is refused and runs nothing; each bad input gives its one-line error.
// Also the zip reader and the unpickler on hand-made bytes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/pickle_reader.h"
#include "io/torch_checkpoint.h"
#include "io/zip_archive.h"
#include "test_support.h"
#include "util/error.h"

namespace cq {
namespace {

namespace fs = std::filesystem;
using namespace std::string_literals;

// The checkpoints, written once per build tree and script version (the directory name holds
// a hash of the script), so the tests of one ctest run share them; an empty path when the
// generator cannot run (then the test skips or, with CQ_REQUIRE_SHARED=1, fails).
fs::path generated_checkpoints() {
  static const fs::path dir = [] {
    const auto script = test::source_dir() / "tests/reference/torch_checkpoints.py";
    std::ifstream in(script, std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto out = fs::path(CQ_BINARY_DIR) / "test-torch-checkpoints" / std::to_string(std::hash<std::string>{}(text));
    if (fs::exists(out / "done")) return out;
    const auto staging = fs::path(out.string() + ".tmp-" + std::to_string(::getpid()));
    fs::remove_all(staging);
    const auto models = test::shared_dir() / "models";
    const auto result = test::run_shell("/usr/bin/python3 '" + script.string() + "' '" + staging.string() + "' '" +
                                        (models / "stories260k").string() + "' '" + (models / "tinyopt").string() + "'");
    if (result.exit_code != 0) {
      ADD_FAILURE() << "tests/reference/torch_checkpoints.py failed:\n" << result.output;
      return fs::path();
    }
    std::ofstream(staging / "done") << "ok\n";
    std::error_code ec;
    fs::rename(staging, out, ec);  // another test process may have won the race: use its copy
    if (ec) fs::remove_all(staging);
    return out;
  }();
  return dir;
}

#define CQ_NEED_CHECKPOINTS()                     \
  CQ_NEED_SHARED("models/tinyopt/config.json");   \
  CQ_NEED_SHARED("models/stories260k/config.json"); \
  const fs::path checkpoints = generated_checkpoints(); \
  ASSERT_FALSE(checkpoints.empty())

// The numbers of `cq ppl --json` (every window's NLL at full precision), not the timing.
std::string ppl_line(const fs::path& model, const std::string& extra = "") {
  const auto text = test::shared_dir() / "data/wikitext2/wikitext2_test_joined.prefix.txt";
  const auto result = test::run_cq("ppl --quiet --model '" + model.string() + "' --text '" + text.string() +
                                   "' --seqlen 128 --max-windows 3 --json - " + extra);
  EXPECT_EQ(result.exit_code, 0) << model << ": " << result.output;
  const auto begin = result.output.find('{'), end = result.output.rfind('}');
  if (begin == std::string::npos || end == std::string::npos) return "no JSON: " + result.output;
  const auto json = nlohmann::json::parse(result.output.substr(begin, end - begin + 1));
  return json["quantization"].dump() + " " + json["window_nll"].dump() + " " + json["perplexity"].dump();
}

void expect_clean_failure(const test::CommandResult& result, const std::string& must_contain) {
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_EQ(result.output.rfind("cq: error: ", 0), 0u) << result.output;
  EXPECT_NE(result.output.find(must_contain), std::string::npos) << "expected '" << must_contain << "' in: " << result.output;
  EXPECT_EQ(std::count(result.output.begin(), result.output.end(), '\n'), 1) << result.output;
}

TEST(TorchCheckpoint, SharedModelsGiveTheirSafetensorsResults) {
  CQ_NEED_CHECKPOINTS();
  for (const char* model : {"stories260k", "tinyopt"}) {
    SCOPED_TRACE(model);
    const auto variants = checkpoints / model;
    const std::string reference = ppl_line(test::shared_dir() / "models" / model);
    ASSERT_EQ(reference.rfind("no JSON", 0), std::string::npos) << reference;
    for (const char* variant : {"bin_f32", "bin_sharded", "bin_views", "bin_no_prefix", "both"})
      EXPECT_EQ(ppl_line(variants / variant), reference) << variant;
    // Half precision: the same stored values as a safetensors copy give the same numbers.
    EXPECT_EQ(ppl_line(variants / "bin_f16"), ppl_line(variants / "st_f16"));
    EXPECT_EQ(ppl_line(variants / "bin_bf16"), ppl_line(variants / "st_bf16"));
    EXPECT_NE(ppl_line(variants / "bin_bf16"), reference);  // the conversion did change the values
    // A quantized setting goes through the same weights.
    EXPECT_EQ(ppl_line(variants / "bin_sharded", "--scheme w4a8-g128"),
              ppl_line(test::shared_dir() / "models" / model, "--scheme w4a8-g128"));
  }
}

TEST(TorchCheckpoint, InfoGenerateAndQuantizeWorkOnBinDirectories) {
  CQ_NEED_CHECKPOINTS();
  const auto model = checkpoints / "tinyopt" / "bin_views";
  const auto reference = test::shared_dir() / "models/tinyopt";
  const auto info = test::run_cq("info --model '" + model.string() + "'");
  EXPECT_EQ(info.exit_code, 0) << info.output;
  EXPECT_NE(info.output.find("tied lm_head yes"), std::string::npos) << info.output;
  const std::string generate = "generate --quiet --prompt 'Once upon a time' --ids --model ";
  const auto from_bin = test::run_cq(generate + "'" + model.string() + "'");
  EXPECT_EQ(from_bin.exit_code, 0) << from_bin.output;
  EXPECT_EQ(from_bin.output, test::run_cq(generate + "'" + reference.string() + "'").output);
  // cq quantize reads the .bin and writes a normal quantized checkpoint.
  const auto out = test::scratch_dir("torch-quantize");
  const auto quantize = test::run_cq("quantize --quiet --scheme w8a8 --model '" + model.string() + "' --out '" +
                                     (out / "q").string() + "'");
  ASSERT_EQ(quantize.exit_code, 0) << quantize.output;
  const auto quantize_reference = test::run_cq("quantize --quiet --scheme w8a8 --model '" + reference.string() +
                                               "' --out '" + (out / "r").string() + "'");
  ASSERT_EQ(quantize_reference.exit_code, 0) << quantize_reference.output;
  EXPECT_EQ(ppl_line(out / "q"), ppl_line(out / "r"));
}

TEST(TorchCheckpoint, MaliciousPickleIsRefusedAndRunsNothing) {
  CQ_NEED_CHECKPOINTS();
  const auto dir = checkpoints / "bad" / "malicious";
  fs::remove(checkpoints / "bad" / "pwned");
  // torch_checkpoints.py checked that torch.load of these bytes does create the file.
  expect_clean_failure(test::run_cq("info --model '" + dir.string() + "'"),
                       (dir / "pytorch_model.bin").string() + ": pickle refers to global 'posix.system'");
  EXPECT_FALSE(fs::exists(checkpoints / "bad" / "pwned"));
}

TEST(TorchCheckpoint, BadInputsGiveOneClearError) {
  CQ_NEED_CHECKPOINTS();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"legacy", "legacy torch.save format (PyTorch < 1.6, not a zip archive) is not supported"},
      {"truncated", "not a zip archive or truncated"},
      {"compressed", "zip entry 'archive/data.pkl' is compressed (method 8)"},
      {"wrong_entry_size", "corrupt zip: entry 'archive/data/0' has 16 bytes in its local header but 12 in the central directory"},
      {"short_storage", "tensor 'w': shape [2,2] at offset 1 reaches element 4 of storage '0', which has 4"},
      {"storage_bytes", "tensor 'w': storage 'archive/data/0' has 16 bytes, the pickle says 5 elements"},
      {"unknown_dtype", "tensor 'w' has unknown storage type 'ComplexFloatStorage'"},
      {"int64", "tensor 'w' is int64 (LongStorage)"},
      {"key_collision", "key 'w' appears twice in one dict"},
      {"deep", "pickle nests containers deeper than 64"},
      {"huge_string", "truncated pickle: needs 2147483647 more bytes"},
      {"missing_storage", "tensor 'w': storage 'archive/data/7' is missing from the archive"},
      {"not_a_dict", "the pickle holds a list, not a state dict"},
      {"training_checkpoint", "'model' is a dict, not a tensor (a training checkpoint? save model.state_dict())"},
  };
  for (const auto& [name, expected] : cases) {
    SCOPED_TRACE(name);
    const auto dir = checkpoints / "bad" / name;
    expect_clean_failure(test::run_cq("info --model '" + dir.string() + "'"), (dir / "pytorch_model.bin").string() + ": " + expected);
  }
}

TEST(TorchCheckpoint, NameInTwoShardsIsACollision) {
  CQ_NEED_CHECKPOINTS();
  const auto dir = checkpoints / "bad" / "two_shards";
  expect_clean_failure(test::run_cq("info --model '" + dir.string() + "'"),
                       (dir / "pytorch_model-00002-of-00002.bin").string() + ": tensor 'w' appears in more than one file");
}

TEST(TorchCheckpoint, Zip64EndRecord) {
  CQ_NEED_CHECKPOINTS();
  const auto loaded = read_torch_state_dict(checkpoints / "bad" / "zip64" / "pytorch_model.bin");
  ASSERT_EQ(loaded.tensors.size(), 1u);
  std::vector<float> values(4);
  std::memcpy(values.data(), loaded.tensors.at("w").data, 16);
  EXPECT_EQ(values, (std::vector<float>{1, 2, 3, 4}));
}

// --- the unpickler on hand-made bytes

std::span<const std::byte> as_bytes(const std::string& s) { return {reinterpret_cast<const std::byte*>(s.data()), s.size()}; }

std::string unpickle_error(const std::string& pickle) {
  return test::error_of([&] { PickleReader reader(as_bytes(pickle), "x.pkl"); });
}

TEST(PickleReader, RefusesEveryOtherGlobalByName) {
  EXPECT_EQ(unpickle_error("\x80\x02" "cbuiltins\neval\n."), "x.pkl: pickle refers to global 'builtins.eval', which a state dict never needs; refused (nothing is imported or run)");
  EXPECT_NE(unpickle_error("\x80\x02" "csubprocess\nPopen\n.").find("'subprocess.Popen'"), std::string::npos);
  // STACK_GLOBAL (protocol 4) is checked the same way.
  EXPECT_NE(unpickle_error("\x80\x04\x8c\x02os\x8c\x06system\x93.").find("'os.system'"), std::string::npos);
  // A storage type tag is never callable.
  EXPECT_NE(unpickle_error("\x80\x02" "ctorch\nFloatStorage\n)R.").find("calls 'torch.FloatStorage'"), std::string::npos);
  EXPECT_NE(unpickle_error("\x80\x02" "ctorch.os\nFooStorage\n.").find("refers to global"), std::string::npos);
}

TEST(PickleReader, BoundsAndMalformedInput) {
  EXPECT_NE(unpickle_error("\x80\x02" "h\x05.").find("memo entry 5 read before it is written"), std::string::npos);
  EXPECT_NE(unpickle_error("\x80\x02" "a.").find("stack underflow"), std::string::npos);
  EXPECT_NE(unpickle_error("\x80\x02" "]").find("truncated pickle"), std::string::npos);
  EXPECT_NE(unpickle_error("\x80\x02" "]]..").find("STOP with 2 values"), std::string::npos);
  EXPECT_NE(unpickle_error("\x80\x02" "cos\nsystem").find("truncated"), std::string::npos);
  EXPECT_NE(unpickle_error("\x80\x02" "I1\n.").find("opcode 0x49"), std::string::npos);
  // A list appended to itself: no leak, no endless recursion (its depth grows to the bound).
  std::string self_append = "\x80\x02]q\x00"s;
  for (int i = 0; i < 70; ++i) self_append += "h\x00"s + "a";
  EXPECT_NE(unpickle_error(self_append + ".").find("deeper than 64"), std::string::npos);
  std::string deep = "\x80\x02";
  for (int i = 0; i < 66; ++i) deep += "]";
  for (int i = 0; i < 65; ++i) deep += "a";
  EXPECT_NE(unpickle_error(deep + ".").find("deeper than 64"), std::string::npos);
  std::string shallow = "\x80\x02";
  for (int i = 0; i < 65; ++i) shallow += "]";
  for (int i = 0; i < 64; ++i) shallow += "a";
  EXPECT_EQ(unpickle_error(shallow + "."), "");
}

TEST(PickleReader, ReadsNumbersStringsAndContainers) {
  // {'a': [1, -2, 300, 70000, 2**40, -1.5, True, None, 'xy']}
  std::string p = "\x80\x02}q\x00X\x01\x00\x00\x00"s + "a]q\x01(K\x01J\xfe\xff\xff\xffM\x2c\x01J\x70\x11\x01\x00"s;
  p += "\x8a\x06\x00\x00\x00\x00\x00\x01"s;
  p += "G\xbf\xf8\x00\x00\x00\x00\x00\x00"s;
  p += "\x88N\x8c\x02xyes."s;
  PickleReader reader(as_bytes(p), "x.pkl");
  const PickleValue& root = reader.value(reader.root());
  ASSERT_EQ(root.kind, PickleKind::Dict);
  ASSERT_EQ(root.items.size(), 2u);
  EXPECT_EQ(reader.value(root.items[0]).text, "a");
  const PickleValue& list = reader.value(root.items[1]);
  ASSERT_EQ(list.items.size(), 9u);
  EXPECT_EQ(reader.value(list.items[0]).integer, 1);
  EXPECT_EQ(reader.value(list.items[1]).integer, -2);
  EXPECT_EQ(reader.value(list.items[2]).integer, 300);
  EXPECT_EQ(reader.value(list.items[3]).integer, 70000);
  EXPECT_EQ(reader.value(list.items[4]).integer, int64_t{1} << 40);
  EXPECT_EQ(reader.value(list.items[5]).number, -1.5);
  EXPECT_EQ(reader.value(list.items[6]).kind, PickleKind::Bool);
  EXPECT_EQ(reader.value(list.items[7]).kind, PickleKind::None);
  EXPECT_EQ(reader.value(list.items[8]).text, "xy");
}

TEST(ZipArchive, RefusesNonZipAndShortInput) {
  EXPECT_NE(test::error_of([] { ZipArchive zip(as_bytes("PK\x03\x04"), "z.zip"); }).find("z.zip: truncated zip"), std::string::npos);
  EXPECT_NE(test::error_of([] { ZipArchive zip(as_bytes(std::string(100, 'x')), "z.zip"); }).find("no end-of-central-directory record"),
            std::string::npos);
  // An end record claiming a directory beyond the file.
  std::string end = "PK\x05\x06" + std::string(6, '\0') + std::string("\x01\x00", 2) + std::string("\x2e\x00\x00\x00", 4) +
                    std::string("\x10\x00\x00\x00", 4) + std::string(2, '\0');
  EXPECT_NE(test::error_of([&] { ZipArchive zip(as_bytes(end), "z.zip"); }).find("the central directory"), std::string::npos);
}

}  // namespace
}  // namespace cq
