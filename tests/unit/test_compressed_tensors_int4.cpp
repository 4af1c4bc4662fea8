// `cq export --format compressed-tensors` for weight-only int4 (W4A16, "pack-quantized";
// docs/EXPORT.md): the packing against hand-computed words, the exports of RTN, AWQ and GPTQ
// loaded by the independent PyTorch loader (tests/reference/compressed_tensors_reference.py,
// written from the format's spec) and by cq, both giving the in-process quantized model's
// perplexity; the config block and tensors; models whose sizes the groups do not divide are
// refused; broken pack-quantized directories are refused on loading, naming what is wrong.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <nlohmann/json.hpp>

#include "eval/perplexity.h"
#include "io/safetensors.h"
#include "model/transformer.h"
#include "ptq/apply_quantization.h"
#include "ptq/compressed_tensors.h"
#include "ptq/compressed_tensors_pack_quantized.h"
#include "ptq/tensor_set.h"
#include "ptq/quantized_checkpoint.h"
#include "compressed_tensors_test_support.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/text_file.h"

namespace cq {
namespace {

namespace fs = std::filesystem;
using test::error_of;

constexpr int64_t kSeqlen = test::kExportSeqlen;
constexpr int64_t kWindows = test::kExportWindows;

// Eight codes of one word, first element in the lowest nibble, each stored + 8:
// {1, 2, 3, 4, 5, 6, 7, 0} -> nibbles 9, A, B, C, D, E, F, 8 from the bottom = 0x8FEDCBA9.
TEST(PackQuantized, WordsAsHandComputed) {
  const std::vector<int8_t> row = {1, 2, 3, 4, 5, 6, 7, 0, -8, -1};
  const std::vector<int32_t> words = pack_int4_rows(row, 1, 10);
  ASSERT_EQ(words.size(), 2u);
  EXPECT_EQ(std::bit_cast<uint32_t>(words[0]), 0x8FEDCBA9u);
  EXPECT_EQ(std::bit_cast<uint32_t>(words[1]), 0x70u);  // -8 -> 0, -1 -> 7, padding nibbles 0
  EXPECT_EQ(unpack_int4_rows(words, 1, 10), row);
  // Zero points pack along the output dimension: rows 0..7 of a column share one word.
  const std::vector<int8_t> column = {-8, -7, 0, 0, 0, 0, 0, 7, 3};  // 9 rows x 1 column
  const std::vector<int32_t> zero_words = pack_int4_columns(column, 9, 1);
  ASSERT_EQ(zero_words.size(), 2u);
  EXPECT_EQ(std::bit_cast<uint32_t>(zero_words[0]), 0xF8888810u);
  EXPECT_EQ(std::bit_cast<uint32_t>(zero_words[1]), 0xBu);
  EXPECT_EQ(unpack_int4_columns(zero_words, 9, 1), column);
  // Round trip of a matrix whose sizes are not multiples of 8, both directions.
  std::mt19937 rng(7);
  std::vector<int8_t> codes(13 * 21);
  for (int8_t& c : codes) c = static_cast<int8_t>(static_cast<int>(rng() % 16) - 8);
  EXPECT_EQ(unpack_int4_rows(pack_int4_rows(codes, 13, 21), 13, 21), codes);
  EXPECT_EQ(pack_int4_rows(codes, 13, 21).size(), 13u * 3u);
  EXPECT_EQ(unpack_int4_columns(pack_int4_columns(codes, 13, 21), 13, 21), codes);
  EXPECT_EQ(pack_int4_columns(codes, 13, 21).size(), 2u * 21u);
}

// A zero point outside 0..15 (OmniQuant's grid does not clamp them) is refused, not wrapped.
TEST(PackQuantized, ZeroPointOutsideTheFourBitRangeIsRefused) {
  QuantizedMatrix q;
  q.rows = 8;
  q.cols = 4;
  q.bits = 4;
  q.group_size = 4;
  q.codes.assign(32, 3);
  q.group_scales.assign(8, 0.5f);
  q.group_zeros.assign(8, 8);
  TensorSet fits;
  add_pack_quantized_linear(fits, "fc", q);
  q.group_zeros[5] = 16;
  TensorSet wraps;
  EXPECT_NE(error_of([&] { add_pack_quantized_linear(wraps, "fc", q); }).find("fc: zero point 16 (row 5) lies outside the 4-bit range"),
            std::string::npos);
  q.group_zeros[5] = -1;
  EXPECT_NE(error_of([&] { add_pack_quantized_linear(wraps, "fc", q); }).find("zero point -1"), std::string::npos);
}

QuantConfig w4a16(const std::string& method, const std::string& weight_method, int64_t group_size, bool asymmetric) {
  QuantConfig c;
  c.method = method;
  c.weight_bits = 4;
  c.activation_bits = 16;
  c.weight_method = weight_method;
  c.group_size = group_size;
  c.weight_asymmetric = asymmetric;
  c.activation_method = "per-token";
  c.calib_samples = 2;  // a quick search: the test is about the export, not AWQ's or GPTQ's quality
  c.calib_seqlen = kSeqlen;
  c.awq_grid = 5;
  c.awq_clip_tokens = 64;
  return c;
}

std::string text_path() { return test::export_text_path(); }
double cq_perplexity(Transformer& model, const std::vector<int32_t>& tokens) { return test::export_cq_perplexity(model, tokens); }
std::vector<double> reference_perplexities(const std::vector<fs::path>& exports, const std::vector<int32_t>& tokens) {
  return test::export_reference_perplexities(exports, tokens);
}

// RTN, AWQ (asymmetric groups, its own setting) and GPTQ, group-wise and per channel: the
// export loaded by cq runs the very weights of the in-process model (same perplexity to
// float32 rounding of the evaluation), and the spec-written PyTorch loader agrees.
TEST(CompressedTensorsInt4Export, PerplexityMatchesInProcessModelAndIndependentLoader) {
  CQ_NEED_SHARED("models/tinyopt");
  CQ_NEED_SHARED("data/tinystories");
  const fs::path model_dir = test::shared_dir() / "models/tinyopt";  // linear inputs 128 and 512
  const auto tokenizer = load_tokenizer(model_dir);
  const std::vector<int32_t> all = tokenizer->encode(read_text_file(text_path()), true);
  const std::vector<int32_t> tokens(all.begin(), all.begin() + kSeqlen * kWindows);
  const std::vector<int32_t> calibration(all.begin() + static_cast<std::ptrdiff_t>(all.size() / 2), all.end());
  const fs::path scratch = test::scratch_dir("ct4_export");
  const std::vector<std::pair<std::string, QuantConfig>> settings = {
      {"rtn-g64", w4a16("rtn", "group", 64, false)},
      {"rtn-channel", w4a16("rtn", "per-channel", 128, false)},
      {"awq-g128-asym", w4a16("awq", "group", 128, true)},
      {"gptq-g64-asym", w4a16("gptq", "group", 64, true)}};
  std::vector<fs::path> exports;
  std::vector<double> in_process, loaded;
  for (const auto& [name, config] : settings) {
    {
      Transformer model = load_model(model_dir);
      apply_quantization(model, config, calibration);
      in_process.push_back(cq_perplexity(model, tokens));
    }
    exports.push_back(scratch / name);
    {
      Transformer model = load_model(model_dir);
      export_compressed_tensors(model, config, calibration, exports.back());
    }
    Transformer exported = load_model(exports.back());
    const StoredQuantization* stored = stored_quantization(exported);
    EXPECT_NE(stored, nullptr);
    if (stored != nullptr) {
      EXPECT_EQ(stored->config.weight_bits, 4);
    }
    apply_quantization(exported, QuantConfig{});
    loaded.push_back(cq_perplexity(exported, tokens));
  }
  const std::vector<double> reference = reference_perplexities(exports, tokens);
  ASSERT_EQ(reference.size(), settings.size());
  for (size_t i = 0; i < settings.size(); ++i) {
    SCOPED_TRACE(settings[i].first);
    std::printf("tinyopt %s: cq setting %.6f | cq loading the export %.6f | PyTorch reference %.6f\n", settings[i].first.c_str(),
                in_process[i], loaded[i], reference[i]);
    // The same FP32 weights, bit for bit ((q − z) · scale in both): equal perplexities.
    EXPECT_EQ(loaded[i], in_process[i]);
    // No activation rounding here: only float summation order differs from PyTorch. A swapped
    // nibble, a zero point off by one or a misplaced scale is far outside this.
    EXPECT_NEAR(reference[i], loaded[i], 1e-4 * loaded[i]);
  }
}

// GPTQ's updates can move a row's largest weight, so rounding its weights again to nearest
// (with a fresh row maximum) changes codes; the export writes GPTQ's own codes, also for W8A8.
TEST(CompressedTensorsInt4Export, GptqW8A8ExportKeepsGptqsGrid) {
  CQ_NEED_SHARED("models/tinyopt");
  CQ_NEED_SHARED("data/tinystories");
  const fs::path model_dir = test::shared_dir() / "models/tinyopt";
  const auto tokenizer = load_tokenizer(model_dir);
  const std::vector<int32_t> all = tokenizer->encode(read_text_file(text_path()), true);
  const std::vector<int32_t> tokens(all.begin(), all.begin() + kSeqlen * kWindows);
  const std::vector<int32_t> calibration(all.begin() + static_cast<std::ptrdiff_t>(all.size() / 2), all.end());
  QuantConfig config = w4a16("gptq", "per-channel", 128, false);
  config.apply_scheme("w8a8");
  const fs::path out = test::scratch_dir("ct4_gptq_w8a8") / "export";
  std::vector<std::vector<float>> in_process;
  {
    Transformer model = load_model(model_dir);
    apply_quantization(model, config, calibration);
    for (LinearLayer& linear : model.linear_layers()) in_process.emplace_back(linear.mutable_weight().begin(), linear.mutable_weight().end());
  }
  {
    Transformer model = load_model(model_dir);
    export_compressed_tensors(model, config, calibration, out);
  }
  Transformer exported = load_model(out);
  for (size_t i = 0; i < in_process.size(); ++i) {
    const std::span<float> loaded = exported.linear_layers()[i].mutable_weight();
    ASSERT_TRUE(std::equal(loaded.begin(), loaded.end(), in_process[i].begin())) << exported.linear_layers()[i].name;
  }
}

TEST(CompressedTensorsInt4Export, ConfigAndTensorsAsTheLibraryWritesThem) {
  CQ_NEED_SHARED("models/tinyopt");
  const fs::path model_dir = test::shared_dir() / "models/tinyopt";
  const fs::path out = test::scratch_dir("ct4_format") / "export";
  const QuantConfig config = w4a16("rtn", "group", 64, true);
  QuantizedMatrix expected;
  const std::string fc1 = "model.decoder.layers.1.fc1";  // 512 x 128
  {
    Transformer model = load_model(model_dir);
    for (LinearLayer& linear : model.linear_layers())
      if (linear.name == fc1)
        expected = make_weight_quantizer(config)->quantize(MatrixView{linear.mutable_weight().data(), 512, 128, 128}, nullptr);
    export_compressed_tensors(model, config, {}, out);
  }
  const nlohmann::json q = nlohmann::json::parse(read_text_file(out / "config.json")).at("quantization_config");
  EXPECT_EQ(q["format"], "pack-quantized");
  EXPECT_EQ(q["quant_method"], "compressed-tensors");
  EXPECT_EQ(q["quantization_status"], "compressed");
  EXPECT_EQ(q["ignore"], nlohmann::json::array({"lm_head"}));
  const nlohmann::json& group = q["config_groups"]["group_0"];
  EXPECT_EQ(group["format"], "pack-quantized");
  EXPECT_EQ(group["targets"], nlohmann::json::array({"Linear"}));
  EXPECT_TRUE(group["input_activations"].is_null());
  EXPECT_TRUE(group["output_activations"].is_null());
  const nlohmann::json& w = group["weights"];
  EXPECT_EQ(w["num_bits"], 4);
  EXPECT_EQ(w["type"], "int");
  EXPECT_EQ(w["symmetric"], false);
  EXPECT_EQ(w["strategy"], "group");
  EXPECT_EQ(w["group_size"], 64);
  EXPECT_EQ(w["dynamic"], false);
  EXPECT_EQ(w["zp_dtype"], "torch.int8");
  EXPECT_TRUE(w["actorder"].is_null());
  EXPECT_EQ(w["observer"], "memoryless_minmax");

  const SafetensorsCheckpoint exported(out);
  const TensorInfo& packed = exported.tensor(fc1 + ".weight_packed");
  EXPECT_EQ(packed.dtype, DType::I32);
  EXPECT_EQ(packed.shape, (std::vector<int64_t>{512, 16}));
  const TensorInfo& shape = exported.tensor(fc1 + ".weight_shape");
  EXPECT_EQ(shape.dtype, DType::I64);
  EXPECT_EQ(i64_values(shape), (std::vector<int64_t>{512, 128}));
  const TensorInfo& scale = exported.tensor(fc1 + ".weight_scale");
  EXPECT_EQ(scale.dtype, DType::F32);
  EXPECT_EQ(scale.shape, (std::vector<int64_t>{512, 2}));
  EXPECT_EQ(to_f32(scale), expected.group_scales);
  const TensorInfo& zero = exported.tensor(fc1 + ".weight_zero_point");
  EXPECT_EQ(zero.dtype, DType::I32);
  EXPECT_EQ(zero.shape, (std::vector<int64_t>{64, 2}));
  EXPECT_FALSE(exported.contains(fc1 + ".weight"));
  EXPECT_EQ(exported.tensor(fc1 + ".bias").dtype, DType::F32);
  // Element (k, j) by hand: word k*16 + j/8, nibble j%8 holds cq's unsigned code (code − 8 + 8);
  // zero point (k, g): word (k/8)*2 + g, nibble k%8.
  const std::vector<int32_t> words = i32_values(packed);
  const std::vector<int32_t> zero_words = i32_values(zero);
  for (int64_t k = 0; k < 512; ++k) {
    for (int64_t j = 0; j < 128; ++j) {
      const uint32_t word = std::bit_cast<uint32_t>(words[static_cast<size_t>(k * 16 + j / 8)]);
      ASSERT_EQ(static_cast<int>((word >> (4 * (j % 8))) & 0xF), expected.codes[static_cast<size_t>(k * 128 + j)]) << k << ", " << j;
    }
    for (int64_t g = 0; g < 2; ++g) {
      const uint32_t word = std::bit_cast<uint32_t>(zero_words[static_cast<size_t>((k / 8) * 2 + g)]);
      ASSERT_EQ(static_cast<int>((word >> (4 * (k % 8))) & 0xF), expected.group_zeros[static_cast<size_t>(k * 2 + g)]) << k << ", " << g;
    }
  }

  // Symmetric per channel: [out][1] scales, no zero point, symmetric true, group_size null.
  const fs::path channel = test::scratch_dir("ct4_format") / "channel";
  {
    Transformer model = load_model(model_dir);
    export_compressed_tensors(model, w4a16("rtn", "per-channel", 128, false), {}, channel);
  }
  const nlohmann::json wc = nlohmann::json::parse(read_text_file(channel / "config.json"))["quantization_config"]["config_groups"]["group_0"]["weights"];
  EXPECT_EQ(wc["strategy"], "channel");
  EXPECT_EQ(wc["symmetric"], true);
  EXPECT_TRUE(wc["group_size"].is_null());
  EXPECT_TRUE(wc["zp_dtype"].is_null());
  const SafetensorsCheckpoint channel_export(channel);
  EXPECT_EQ(channel_export.tensor(fc1 + ".weight_scale").shape, (std::vector<int64_t>{512, 1}));
  EXPECT_FALSE(channel_export.contains(fc1 + ".weight_zero_point"));
}

TEST(CompressedTensorsInt4Export, SettingsAndShapesWithoutExportAreRefused) {
  EXPECT_TRUE(compressed_tensors_refusal(w4a16("rtn", "group", 128, false)).empty());
  EXPECT_TRUE(compressed_tensors_refusal(w4a16("awq", "group", 128, true)).empty());
  EXPECT_TRUE(compressed_tensors_refusal(w4a16("gptq", "per-channel", 128, false)).empty());
  QuantConfig w4a8_groups = w4a16("rtn", "group", 128, false);
  w4a8_groups.activation_bits = 8;
  EXPECT_NE(compressed_tensors_refusal(w4a8_groups).find("group-wise W4 weights with int8 activations"), std::string::npos);
  QuantConfig w3 = w4a16("rtn", "group", 128, false);
  w3.weight_bits = 3;
  EXPECT_NE(compressed_tensors_refusal(w3).find("weight-only W3A16"), std::string::npos) << compressed_tensors_refusal(w3);
  QuantConfig rotated = w4a16("rtn", "group", 128, false);
  rotated.rotation = "hadamard";
  EXPECT_NE(compressed_tensors_refusal(rotated).find("--rotate hadamard"), std::string::npos);

  // stories260k: q/k/v, o, gate/up read 64 columns, down_proj 172 = 4 · 43. g32 divides 64
  // but not 172: refused naming down_proj and the sizes, before any work, nothing written.
  CQ_NEED_SHARED("models/stories260k");
  const fs::path out = test::scratch_dir("ct4_refused") / "export";
  const auto run = test::run_cq(fmt::format(
      "export --model '{}' --format compressed-tensors --out '{}' --method rtn --wbits 4 --weight-quant group --group-size 32",
      (test::shared_dir() / "models/stories260k").string(), out.string()));
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.output.find("model.layers.0.mlp.down_proj has 172 input columns, not a multiple of --group-size 32"), std::string::npos)
      << run.output;
  EXPECT_NE(run.output.find("the divisors of 4"), std::string::npos) << run.output;
  EXPECT_FALSE(fs::exists(out));
  Transformer model = load_model(test::shared_dir() / "models/stories260k");
  EXPECT_NE(compressed_tensors_shape_refusal(model, w4a16("rtn", "group", 128, false)).find("has 64 input columns"), std::string::npos);
  EXPECT_TRUE(compressed_tensors_shape_refusal(model, w4a16("rtn", "group", 4, false)).empty());
  EXPECT_TRUE(compressed_tensors_shape_refusal(model, w4a16("rtn", "per-channel", 128, false)).empty());
}

// `cq export` then `cq ppl` on the export, through the CLI.
TEST(CompressedTensorsInt4Export, CommandLineExportRuns) {
  CQ_NEED_SHARED("models/tinyopt");
  CQ_NEED_SHARED("data/tinystories");
  const fs::path out = test::scratch_dir("ct4_cli") / "export";
  const auto exported = test::run_cq(fmt::format(
      "export --model '{}' --format compressed-tensors --out '{}' --method rtn --wbits 4 --weight-quant group --group-size 128",
      (test::shared_dir() / "models/tinyopt").string(), out.string()));
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  EXPECT_NE(exported.output.find("pack-quantized W4A16"), std::string::npos) << exported.output;
  const auto ppl = test::run_cq(fmt::format("ppl --model '{}' --text '{}' --seqlen 128 --max-windows 2", out.string(), text_path()));
  EXPECT_EQ(ppl.exit_code, 0) << ppl.output;
  const auto flags = test::run_cq(fmt::format("ppl --model '{}' --text '{}' --seqlen 128 --max-windows 1 --wbits 4", out.string(), text_path()));
  EXPECT_NE(flags.exit_code, 0) << flags.output;
}

// A copy of `source` whose model.safetensors has tensor edits applied (nullopt: removed).
struct TensorEdit {
  std::string name;
  std::optional<std::pair<DType, std::vector<int64_t>>> replacement;  // dtype and shape, zero bytes
};
fs::path with_tensor_edit(const fs::path& source, const fs::path& target, const TensorEdit& edit) {
  fs::remove_all(target);
  fs::create_directories(target);
  for (const auto& entry : fs::directory_iterator(source))
    if (entry.path().filename() != "model.safetensors") fs::copy_file(entry.path(), target / entry.path().filename());
  const SafetensorsCheckpoint checkpoint(source);
  std::vector<TensorToWrite> tensors;
  std::vector<std::byte> zeros;
  for (const auto& [name, info] : checkpoint.tensors()) {
    if (name != edit.name) {
      tensors.push_back({name, info.dtype, info.shape, {info.data, info.bytes}});
      continue;
    }
    if (!edit.replacement) continue;
    int64_t numel = 1;
    for (int64_t d : edit.replacement->second) numel *= d;
    zeros.assign(static_cast<size_t>(numel) * dtype_size(edit.replacement->first), std::byte{0});
    tensors.push_back({name, edit.replacement->first, edit.replacement->second, zeros});
  }
  write_safetensors(target / "model.safetensors", tensors);
  return target;
}

TEST(CompressedTensorsInt4Export, BrokenPackQuantizedExportsAreRefusedOnLoading) {
  CQ_NEED_SHARED("models/tinyopt");
  const fs::path scratch = test::scratch_dir("ct4_broken");
  const fs::path good = scratch / "good";
  {
    Transformer model = load_model(test::shared_dir() / "models/tinyopt");
    export_compressed_tensors(model, w4a16("rtn", "group", 64, true), {}, good);
  }
  EXPECT_NO_THROW((void)load_model(good));
  const std::string q_proj = "model.decoder.layers.0.self_attn.q_proj";  // 128 x 128, 2 groups
  const auto error_with = [&](const TensorEdit& edit) {
    return error_of([&] { (void)load_model(with_tensor_edit(good, scratch / "edited", edit)); });
  };
  const std::vector<std::pair<TensorEdit, std::string>> cases = {
      {{q_proj + ".weight_packed", std::pair{DType::I32, std::vector<int64_t>{128, 32}}}, "has shape [128, 32], expected [128, 16]"},
      {{q_proj + ".weight_packed", std::pair{DType::I8, std::vector<int64_t>{128, 64}}}, "has dtype I8, expected I32"},
      {{q_proj + ".weight_shape", std::nullopt}, "weight_shape"},
      {{q_proj + ".weight_shape", std::pair{DType::I32, std::vector<int64_t>{2}}}, "has dtype I32, expected I64"},
      {{q_proj + ".weight_shape", std::pair{DType::I64, std::vector<int64_t>{2}}}, "is [0, 0], but the model's"},
      {{q_proj + ".weight_scale", std::pair{DType::F32, std::vector<int64_t>{128, 4}}}, "expected [128, 2] (one scale per group)"},
      {{q_proj + ".weight_scale", std::pair{DType::F32, std::vector<int64_t>{128, 2}}}, "expected a finite scale > 0"},
      {{q_proj + ".weight_zero_point", std::nullopt}, "weight_zero_point"},
      {{q_proj + ".weight_zero_point", std::pair{DType::I32, std::vector<int64_t>{128, 2}}}, "expected [16, 2]"},
  };
  for (const auto& [edit, expected] : cases) {
    const std::string error = error_with(edit);
    EXPECT_NE(error.find(expected), std::string::npos) << edit.name << ": " << error;
    EXPECT_NE(error.find((scratch / "edited").string()), std::string::npos) << edit.name << ": " << error;  // names the checkpoint
  }

  const std::string original = read_text_file(good / "config.json");
  const auto with_config = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json json = nlohmann::json::parse(original);
    edit(json["quantization_config"]);
    std::ofstream(good / "config.json") << json.dump(2);
    return error_of([&] { (void)load_model(good); });
  };
  const auto weights = [](nlohmann::json& q) -> nlohmann::json& { return q["config_groups"]["group_0"]["weights"]; };
  EXPECT_NE(with_config([&](nlohmann::json& q) { weights(q)["num_bits"] = 8; }).find("num_bits 4"), std::string::npos);
  EXPECT_NE(with_config([&](nlohmann::json& q) { weights(q)["actorder"] = "group"; }).find("weight_g_idx"), std::string::npos);
  EXPECT_NE(with_config([&](nlohmann::json& q) { weights(q)["strategy"] = "tensor"; }).find("strategies"), std::string::npos);
  EXPECT_NE(with_config([&](nlohmann::json& q) { weights(q)["group_size"] = nullptr; }).find("positive integer group_size"),
            std::string::npos);
  EXPECT_NE(with_config([&](nlohmann::json& q) { weights(q)["group_size"] = 48; }).find("not a whole number of groups of 48"),
            std::string::npos);
  EXPECT_NE(with_config([&](nlohmann::json& q) {
              q["config_groups"]["group_0"]["input_activations"] = {{"num_bits", 8}};
            }).find("input_activations"),
            std::string::npos);
  // A symmetric scheme over a file with zero points: refused, not run without them.
  EXPECT_NE(with_config([&](nlohmann::json& q) { weights(q)["symmetric"] = true; }).find("scheme is symmetric"), std::string::npos);
  std::ofstream(good / "config.json") << original;
  EXPECT_NO_THROW((void)load_model(good));
}

}  // namespace
}  // namespace cq
