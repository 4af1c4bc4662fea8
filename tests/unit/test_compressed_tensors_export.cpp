// `cq export --format compressed-tensors` (docs/EXPORT.md): the quantization_config block and
// tensors as compressed-tensors lays them out; the export loaded by an independent PyTorch
// loader (tests/reference/compressed_tensors_reference.py, written from the format's spec,
// activations rounded as vLLM's dynamic per-token int8 path does) gives cq's perplexity of the
// loaded export, and, for per-token and SmoothQuant W8A8, cq's perplexity of the setting
// itself; static CrossQuant folds into a per-token model whose perplexity stays close to
// cq's static CrossQuant; settings without a faithful export are refused.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <nlohmann/json.hpp>

#include "eval/perplexity.h"
#include "io/safetensors.h"
#include "model/transformer.h"
#include "ptq/apply_quantization.h"
#include "ptq/compressed_tensors.h"
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

QuantConfig w8a8(const std::string& method, const std::string& activation) {
  QuantConfig c;
  c.method = method;
  c.apply_scheme("w8a8");
  c.activation_method = activation;
  c.calib_samples = 4;
  c.calib_seqlen = kSeqlen;
  return c;
}

QuantConfig static_crossquant() {
  QuantConfig c = w8a8("crossquant", "crossquant");
  c.static_columns = true;
  return c;
}

std::string text_path() { return test::export_text_path(); }
double cq_perplexity(Transformer& model, const std::vector<int32_t>& tokens) { return test::export_cq_perplexity(model, tokens); }
std::vector<double> reference_perplexities(const std::vector<fs::path>& exports, const std::vector<int32_t>& tokens) {
  return test::export_reference_perplexities(exports, tokens);
}

struct Outcome {
  double setting = 0;   // cq running the setting itself
  double loaded = 0;    // cq running the export (load_model)
};

Outcome export_and_load(const fs::path& model_dir, const QuantConfig& config, const fs::path& out,
                        const std::vector<int32_t>& tokens, const std::vector<int32_t>& calibration) {
  Outcome outcome;
  {
    Transformer model = load_model(model_dir);
    apply_quantization(model, config, calibration);
    outcome.setting = cq_perplexity(model, tokens);
  }
  {
    Transformer model = load_model(model_dir);
    export_compressed_tensors(model, config, calibration, out);
  }
  Transformer exported = load_model(out);
  EXPECT_NE(stored_quantization(exported), nullptr);
  apply_quantization(exported, QuantConfig{});
  outcome.loaded = cq_perplexity(exported, tokens);
  return outcome;
}

class CompressedTensorsExport : public ::testing::TestWithParam<std::string> {};

TEST_P(CompressedTensorsExport, PerplexityMatchesIndependentLoader) {
  CQ_NEED_SHARED("models/" + GetParam());
  CQ_NEED_SHARED("data/tinystories");
  const fs::path model_dir = test::shared_dir() / "models" / GetParam();
  const auto tokenizer = load_tokenizer(model_dir);
  const std::vector<int32_t> all = tokenizer->encode(read_text_file(text_path()), true);
  // Calibrate on the second half, evaluate on the first.
  const std::vector<int32_t> tokens(all.begin(), all.begin() + kSeqlen * kWindows);
  const std::vector<int32_t> calibration(all.begin() + static_cast<std::ptrdiff_t>(all.size() / 2), all.end());
  const fs::path scratch = test::scratch_dir("ct_export_" + GetParam());
  const std::vector<std::pair<std::string, QuantConfig>> settings = {
      {"per-token", w8a8("rtn", "per-token")},
      {"smoothquant", [] { QuantConfig c = w8a8("smoothquant", "per-token"); return c; }()},
      {"static-crossquant", static_crossquant()}};
  std::vector<fs::path> exports;
  std::vector<Outcome> outcomes;
  for (const auto& [name, config] : settings) {
    exports.push_back(scratch / name);
    outcomes.push_back(export_and_load(model_dir, config, exports.back(), tokens, calibration));
  }
  const std::vector<double> reference = reference_perplexities(exports, tokens);
  ASSERT_EQ(reference.size(), settings.size());
  for (size_t i = 0; i < settings.size(); ++i) {
    SCOPED_TRACE(settings[i].first);
    std::printf("%s %s: cq setting %.6f | cq loading the export %.6f | PyTorch reference %.6f\n", GetParam().c_str(),
                settings[i].first.c_str(), outcomes[i].setting, outcomes[i].loaded, reference[i]);
    // Codes near a rounding tie flip between two float32 computations: the W8 tolerance of the
    // perplexity goldens (test_ppl_golden.cpp). A wrong scale, zero point or fold is far outside.
    EXPECT_NEAR(outcomes[i].loaded, reference[i], 1e-3 * reference[i]);
    if (settings[i].first != "static-crossquant") EXPECT_NEAR(outcomes[i].setting, outcomes[i].loaded, 1e-5 * outcomes[i].loaded);
    // Folded static CrossQuant rounds each token on a finer grid (docs/EXPORT.md); a skipped
    // or wrong fold would move it far more than this.
    else EXPECT_NEAR(outcomes[i].loaded, outcomes[i].setting, 0.05 * outcomes[i].setting);
  }
}

INSTANTIATE_TEST_SUITE_P(SharedModels, CompressedTensorsExport, ::testing::Values("tinyopt", "stories260k"));

TEST(CompressedTensorsExportFormat, ConfigAndTensorsAsTheLibraryWritesThem) {
  CQ_NEED_SHARED("models/tinyopt");
  const fs::path model_dir = test::shared_dir() / "models/tinyopt";
  const fs::path out = test::scratch_dir("ct_format") / "export";
  {
    Transformer model = load_model(model_dir);
    export_compressed_tensors(model, w8a8("rtn", "per-token"), {}, out);
  }
  const nlohmann::json config = nlohmann::json::parse(read_text_file(out / "config.json"));
  const nlohmann::json& q = config.at("quantization_config");
  EXPECT_EQ(q["quant_method"], "compressed-tensors");
  EXPECT_EQ(q["format"], "int-quantized");
  EXPECT_EQ(q["quantization_status"], "compressed");
  EXPECT_EQ(q["ignore"], nlohmann::json::array({"lm_head"}));
  EXPECT_EQ(q["version"], "0.18.0");
  EXPECT_TRUE(q["kv_cache_scheme"].is_null());
  const nlohmann::json& group = q["config_groups"]["group_0"];
  EXPECT_EQ(group["targets"], nlohmann::json::array({"Linear"}));
  const nlohmann::json& w = group["weights"];
  EXPECT_EQ(w["num_bits"], 8);
  EXPECT_EQ(w["type"], "int");
  EXPECT_EQ(w["symmetric"], true);
  EXPECT_EQ(w["strategy"], "channel");
  EXPECT_EQ(w["dynamic"], false);
  EXPECT_TRUE(w["group_size"].is_null());
  const nlohmann::json& a = group["input_activations"];
  EXPECT_EQ(a["num_bits"], 8);
  EXPECT_EQ(a["strategy"], "token");
  EXPECT_EQ(a["dynamic"], true);
  EXPECT_EQ(a["symmetric"], true);
  EXPECT_TRUE(group["output_activations"].is_null());
  EXPECT_EQ(config["model_type"], "opt");  // the source config kept
  for (const char* file : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"})
    EXPECT_TRUE(fs::exists(out / file)) << file;

  // Tensors, read back and checked against the source weight: code * scale within half a step.
  const SafetensorsCheckpoint exported(out);
  const SafetensorsCheckpoint source(model_dir);
  const std::string q_proj = "model.decoder.layers.0.self_attn.q_proj";
  const TensorInfo& codes = exported.tensor(q_proj + ".weight");
  const TensorInfo& scale = exported.tensor(q_proj + ".weight_scale");
  EXPECT_EQ(codes.dtype, DType::I8);
  EXPECT_EQ(codes.shape, (std::vector<int64_t>{128, 128}));
  EXPECT_EQ(scale.dtype, DType::F32);
  EXPECT_EQ(scale.shape, (std::vector<int64_t>{128, 1}));
  EXPECT_FALSE(exported.contains(q_proj + ".weight_zero_point"));
  const std::vector<float> original = to_f32(source.tensor(q_proj + ".weight"));
  const std::vector<float> scales = to_f32(scale);
  const std::span<const int8_t> code_values = i8_values(codes);
  for (int64_t k = 0; k < 128; ++k) {
    float row_max = 0;
    for (int64_t j = 0; j < 128; ++j) row_max = std::max(row_max, std::abs(original[static_cast<size_t>(k * 128 + j)]));
    EXPECT_FLOAT_EQ(scales[static_cast<size_t>(k)], row_max / 127.f) << "row " << k;
    for (int64_t j = 0; j < 128; ++j) {
      const auto index = static_cast<size_t>(k * 128 + j);
      ASSERT_LE(std::abs(code_values[index] * scales[static_cast<size_t>(k)] - original[index]), 0.5f * scales[static_cast<size_t>(k)] * 1.0001f)
          << q_proj << " [" << k << ", " << j << "]";
    }
  }
  EXPECT_EQ(exported.tensor("model.decoder.embed_tokens.weight").dtype, DType::F32);
  EXPECT_FALSE(exported.contains("lm_head.weight_scale"));
  EXPECT_FALSE(fs::exists(out.string() + fmt::format(".tmp.{}", ::getpid())));
}

// The export's weight `module` decoded by hand: code * scale, row-major out x in.
std::vector<float> exported_weight(const SafetensorsCheckpoint& exported, const std::string& module, std::vector<float>* steps) {
  const TensorInfo& codes = exported.tensor(module + ".weight");
  const std::vector<float> scales = to_f32(exported.tensor(module + ".weight_scale"));
  const std::span<const int8_t> values = i8_values(codes);
  const int64_t in = codes.shape[1];
  std::vector<float> weight(values.size());
  for (size_t i = 0; i < values.size(); ++i) weight[i] = static_cast<float>(values[i]) * scales[i / static_cast<size_t>(in)];
  *steps = scales;
  return weight;
}

// Every static CrossQuant factor f = c^(1−α) lands where docs/EXPORT.md says: the pre-norms
// divided by f and q/k/v, fc1 / gate+up columns times f; with multi-head attention v's rows
// divided by o_proj's f and o_proj's columns times it; fc1 / up rows divided by the down
// projection's f and its columns times it. Grouped-query attention leaves v and o_proj as
// they are. c is calibrated here (ptq/calibration, tested against PyTorch elsewhere).
void expect_folds(const std::string& model_name) {
  const fs::path model_dir = test::shared_dir() / "models" / model_name;
  const auto tokenizer = load_tokenizer(model_dir);
  const std::vector<int32_t> calibration = tokenizer->encode(read_text_file(text_path()), true);
  const QuantConfig config = static_crossquant();
  const fs::path out = test::scratch_dir("ct_folds_" + model_name) / "export";
  std::vector<std::vector<float>> absmax;
  {
    Transformer model = load_model(model_dir);
    absmax = calibrate_static_activations(model, config, calibration);
    export_compressed_tensors(model, config, calibration, out);
  }
  Transformer original = load_model(model_dir);
  const SafetensorsCheckpoint exported(out);
  const ModelConfig& mc = original.config();
  const TensorNames names = tensor_names(mc);
  const bool mha = mc.num_kv_heads == mc.num_heads;
  for (int64_t layer = 0; layer < mc.num_layers; ++layer) {
    const auto f = [&](InputSite site) {
      return static_column_divisors(config.alpha, absmax[static_cast<size_t>(layer * kInputSites + static_cast<int>(site))]);
    };
    const std::string prefix = names.layer_prefix + std::to_string(layer) + ".";
    for (auto [site, norm] : {std::pair{InputSite::AttentionIn, names.attn_norm}, std::pair{InputSite::MlpIn, names.mlp_norm}}) {
      const std::vector<float> gamma = to_f32(exported.tensor(prefix + norm + ".weight"));
      const std::vector<float> divisors = f(site);
      for (size_t j = 0; j < gamma.size(); ++j)
        ASSERT_FLOAT_EQ(gamma[j], original.norm_weight(layer, site)[j] / divisors[j]) << prefix + norm << " [" << j << "]";
    }
    const Transformer::BlockLinears block = original.block_linears(layer);
    std::vector<float> ones_o(static_cast<size_t>(mc.num_heads * mc.head_dim), 1.f);
    const std::vector<float> f_o = mha ? f(InputSite::AttentionOut) : ones_o;
    const std::vector<float> f_down = f(InputSite::MlpDown);
    const int64_t producer = block.up >= 0 ? block.up : block.gate_or_fc1;
    for (const LinearLayer& linear : original.linear_layers()) {
      if (linear.layer != layer) continue;
      const auto index = static_cast<int64_t>(&linear - original.linear_layers().data());
      const std::vector<float> columns =
          linear.site == InputSite::AttentionOut ? f_o : f(linear.site);  // what the input channels were divided by
      std::vector<float> rows(static_cast<size_t>(linear.out_features), 1.f);  // what the outputs are divided by
      if (index == block.v) rows = f_o;
      if (index == producer) rows = f_down;
      const std::vector<float> w = to_f32(original.checkpoint().tensor(linear.name + ".weight"));
      std::vector<float> steps;
      const std::vector<float> got = exported_weight(exported, linear.name, &steps);
      for (int64_t k = 0; k < linear.out_features; ++k)
        for (int64_t j = 0; j < linear.in_features; ++j) {
          const auto i = static_cast<size_t>(k * linear.in_features + j);
          const float expected = w[i] * columns[static_cast<size_t>(j)] / rows[static_cast<size_t>(k)];
          ASSERT_LE(std::abs(got[i] - expected), 0.501f * steps[static_cast<size_t>(k)]) << linear.name << " [" << k << ", " << j << "]";
        }
      if (!linear.bias.empty()) {
        const std::vector<float> bias = to_f32(exported.tensor(linear.name + ".bias"));
        for (size_t k = 0; k < bias.size(); ++k) ASSERT_FLOAT_EQ(bias[k], linear.bias[k] / rows[k]) << linear.name << ".bias";
      }
    }
  }
}

TEST(CompressedTensorsExportFormat, StaticCrossQuantFoldsEveryFactor) {
  CQ_NEED_SHARED("models/tinyopt");
  CQ_NEED_SHARED("models/stories260k");
  CQ_NEED_SHARED("data/tinystories");
  expect_folds("tinyopt");      // OPT, multi-head: all four factors folded
  expect_folds("stories260k");  // LLaMA, grouped-query: o_proj's factor left out
}

TEST(CompressedTensorsExportFormat, SettingsWithoutFaithfulExportAreRefused) {
  QuantConfig dynamic_cq = w8a8("crossquant", "crossquant");
  EXPECT_NE(compressed_tensors_refusal(dynamic_cq).find("dynamic CrossQuant"), std::string::npos);
  QuantConfig w4a4;
  w4a4.apply_scheme("w4a4");
  w4a4.activation_method = "per-token";
  EXPECT_NE(compressed_tensors_refusal(w4a4).find("4-bit activations"), std::string::npos) << compressed_tensors_refusal(w4a4);
  QuantConfig groups;
  groups.apply_scheme("w4a8-g128");
  groups.activation_method = "per-token";
  EXPECT_NE(compressed_tensors_refusal(groups).find("group-wise"), std::string::npos);
  QuantConfig per_tensor = w8a8("rtn", "per-tensor");
  EXPECT_NE(compressed_tensors_refusal(per_tensor).find("per-tensor"), std::string::npos);
  QuantConfig weight_only = w8a8("rtn", "per-token");
  weight_only.activation_bits = 16;
  EXPECT_NE(compressed_tensors_refusal(weight_only).find("W8A16"), std::string::npos);
  QuantConfig bmm = w8a8("rtn", "per-token");
  bmm.quantize_attention_inputs = true;
  EXPECT_FALSE(compressed_tensors_refusal(bmm).empty());
  EXPECT_TRUE(compressed_tensors_refusal(w8a8("rtn", "per-token")).empty());
  EXPECT_TRUE(compressed_tensors_refusal(static_crossquant()).empty());

  CQ_NEED_SHARED("models/tinyopt");
  const fs::path out = test::scratch_dir("ct_refused") / "export";
  const auto run = test::run_cq(fmt::format("export --model '{}' --format compressed-tensors --out '{}' --scheme w8a8",
                                            (test::shared_dir() / "models/tinyopt").string(), out.string()));
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.output.find("dynamic CrossQuant"), std::string::npos) << run.output;
  EXPECT_FALSE(fs::exists(out));
}

// A compressed-tensors directory cq cannot run is refused on loading, naming the file and
// what is wrong, never run as something else.
TEST(CompressedTensorsExportFormat, UnsupportedOrBrokenExportsAreRefusedOnLoading) {
  CQ_NEED_SHARED("models/tinyopt");
  const fs::path out = test::scratch_dir("ct_broken") / "export";
  {
    Transformer model = load_model(test::shared_dir() / "models/tinyopt");
    export_compressed_tensors(model, w8a8("rtn", "per-token"), {}, out);
  }
  const std::string original = read_text_file(out / "config.json");
  const auto with_config = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json json = nlohmann::json::parse(original);
    edit(json["quantization_config"]);
    std::ofstream(out / "config.json") << json.dump(2);
    return error_of([&] { (void)load_model(out); });
  };
  EXPECT_NE(with_config([](nlohmann::json& q) { q["format"] = "marlin-24"; }).find("format \"marlin-24\" is not read"),
            std::string::npos);
  // pack-quantized is read (W4A16), but not over int8 weights.
  EXPECT_NE(with_config([](nlohmann::json& q) {
              q["format"] = "pack-quantized";
              q["config_groups"]["group_0"]["format"] = "pack-quantized";
            }).find("num_bits 4"),
            std::string::npos);
  EXPECT_NE(with_config([](nlohmann::json& q) { q["config_groups"]["group_0"]["weights"]["strategy"] = "group"; }).find("strategy"),
            std::string::npos);
  EXPECT_NE(with_config([](nlohmann::json& q) { q["config_groups"]["group_0"]["weights"]["symmetric"] = false; }).find("symmetric"),
            std::string::npos);
  const std::string error = with_config([](nlohmann::json& q) { q["kv_cache_scheme"] = {{"num_bits", 8}}; });
  EXPECT_NE(error.find("config.json"), std::string::npos) << error;
  EXPECT_NE(error.find("kv_cache_scheme"), std::string::npos) << error;
  std::ofstream(out / "config.json") << original;
  EXPECT_NO_THROW((void)load_model(out));
}

TEST(CompressedTensorsExportFormat, LoadedExportRefusesWeightFlagsAndTheIntegerEngine) {
  CQ_NEED_SHARED("models/tinyopt");
  const fs::path out = test::scratch_dir("ct_load") / "export";
  {
    Transformer model = load_model(test::shared_dir() / "models/tinyopt");
    export_compressed_tensors(model, w8a8("rtn", "per-token"), {}, out);
  }
  Transformer exported = load_model(out);
  EXPECT_NE(error_of([&] { apply_quantization(exported, w8a8("rtn", "per-token")); }).find("already quantized"), std::string::npos);
  QuantConfig int_engine;
  int_engine.engine = "int";
  EXPECT_NE(error_of([&] { apply_quantization(exported, int_engine); }).find("--engine int"), std::string::npos);
  // Re-exporting over a previous export replaces it; another folder is never overwritten.
  const fs::path other = test::scratch_dir("ct_other");
  std::ofstream(other / "notes.txt") << "keep";
  Transformer model = load_model(test::shared_dir() / "models/tinyopt");
  EXPECT_NE(error_of([&] { export_compressed_tensors(model, w8a8("rtn", "per-token"), {}, other); }).find("not a compressed-tensors export"),
            std::string::npos);
  EXPECT_TRUE(fs::exists(other / "notes.txt"));
}

}  // namespace
}  // namespace cq
