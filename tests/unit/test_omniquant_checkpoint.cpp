// `cq quantize --method omniquant` (format version 3, docs/BASELINES.md "Quantized checkpoints"):
// OmniQuant's LWC codes with F32 scales and I32 zero points (not clamped to the codes), LET's
// folded norms and biases (added ones listed in quantization_config.added_biases), and on
// load OmniQuant's activation quantizers again (per-token-asym on every linear input, q/k/v
// attention products). Expected values: the in-process application of the same parameter
// file (`--method omniquant --omni-params`, checked against plain PyTorch in
// test_omniquant.cpp), which the checkpoint must reproduce bit for bit; bad files are refused
// naming file and tensor.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "checkpoint_test_support.h"
#include "eval/perplexity.h"
#include "model/transformer.h"
#include "omniquant_test_support.h"
#include "ptq/apply_quantization.h"
#include "ptq/omniquant.h"
#include "ptq/omniquant_calibration.h"
#include "ptq/quantized_checkpoint.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"
#include "util/text_file.h"

namespace cq {
namespace {

namespace fs = std::filesystem;
using test::error_of;

constexpr const char* kEvalText = "data/tinystories/TinyStories-valid.first100.txt";

std::string shell_quoted(const fs::path& path) { return "'" + path.string() + "'"; }

class OmniQuantCheckpoint : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    CQ_NEED_SHARED("models/" + GetParam());
    CQ_NEED_SHARED(kEvalText);
    CQ_NEED_OMNIQUANT_FIXTURES();
    model_dir_ = test::shared_dir() / "models" / GetParam();
  }

  // `cq ppl` on 8 windows of 256 tokens, the full-precision number from its --json.
  double cq_ppl(const fs::path& model, const std::string& flags) const {
    const fs::path json = test::scratch_dir("omniquant_checkpoint_ppl") / "ppl.json";
    const test::CommandResult result = test::run_cq("ppl --model " + shell_quoted(model) + " --text " +
                                                    shell_quoted(test::shared_dir() / kEvalText) +
                                                    " --seqlen 256 --max-windows 8 --json " + shell_quoted(json) + " " + flags);
    EXPECT_EQ(result.exit_code, 0) << result.output;
    if (result.exit_code != 0) return NAN;
    return nlohmann::json::parse(read_text_file(json))["perplexity"].get<double>();
  }

  fs::path model_dir_;
};

// The two settings of the golden tests: W4A4 per channel (LET + LWC) and W4A16-g128 (LWC).
TEST_P(OmniQuantCheckpoint, QuantizedCheckpointGivesTheInProcessPerplexity) {
  struct Setting {
    std::string name, file, flags;
  };
  for (const Setting& s : {Setting{"w4a4", GetParam() + ".pth", "--scheme w4a4"},
                           Setting{"w4a16_g128", GetParam() + "_g128.pth", "--wbits 4 --abits 16 --weight-quant group --group-size 128"}}) {
    SCOPED_TRACE(s.name);
    const std::string method = "--method omniquant --omni-params " + shell_quoted(test::omniquant_fixtures() / s.file) + " " + s.flags;
    const fs::path out = test::scratch_dir("omniquant_checkpoint_" + GetParam() + "_" + s.name);
    fs::remove_all(out);
    const test::CommandResult quantized = test::run_cq("quantize --model " + shell_quoted(model_dir_) + " --out " + shell_quoted(out) + " " + method);
    ASSERT_EQ(quantized.exit_code, 0) << quantized.output;
    EXPECT_EQ(cq_ppl(out, ""), cq_ppl(model_dir_, method));

    // The stored form: 4-bit codes two a byte, per-row/group F32 scales, I32 zero points.
    const auto tensors = test::read_raw_tensors(out / "model.safetensors");
    Transformer source(model_dir_);
    for (const LinearLayer& linear : source.linear_layers()) {
      const int64_t groups = s.name == "w4a4" ? 1 : (linear.in_features + 127) / 128;
      EXPECT_EQ(tensors.at(linear.name + ".weight").dtype, "U8") << linear.name;
      EXPECT_EQ(tensors.at(linear.name + ".weight").shape, (std::vector<int64_t>{linear.out_features, (linear.in_features + 1) / 2}));
      EXPECT_EQ(tensors.at(linear.name + ".weight_scale").shape, (std::vector<int64_t>{linear.out_features, groups}));
      EXPECT_EQ(tensors.at(linear.name + ".weight_zero").dtype, "I32") << linear.name;
      EXPECT_EQ(tensors.at(linear.name + ".weight_zero").shape, (std::vector<int64_t>{linear.out_features, groups}));
    }
    const nlohmann::json q = test::read_config(out)["quantization_config"];
    EXPECT_EQ(q["format_version"], 3);
    EXPECT_EQ(q["method"], "omniquant");
    EXPECT_EQ(q["weight_symmetric"], false);
    EXPECT_EQ(q["omniquant"]["lwc"], true);
    EXPECT_EQ(q["omniquant"]["let"], s.name == "w4a4");
    EXPECT_NE(q["weight_storage"]["zero"].get<std::string>().find("I32 [out][groups]"), std::string::npos);
    if (s.name != "w4a4") continue;

    // Activation flags override the stored ones as on any checkpoint; q/k/v stay OmniQuant's.
    EXPECT_EQ(cq_ppl(out, "--act-quant crossquant --abits 4"), cq_ppl(model_dir_, method + " --act-quant crossquant"));
    // Every command loads it; generate gives the in-process tokens.
    const std::string prompt = " --prompt 'Once upon a time' -n 8";
    const test::CommandResult generated = test::run_cq("generate --model " + shell_quoted(out) + prompt);
    EXPECT_EQ(generated.exit_code, 0) << generated.output;
    EXPECT_EQ(generated.output, test::run_cq("generate --model " + shell_quoted(model_dir_) + prompt + " " + method).output);
    const test::CommandResult info = test::run_cq("info --model " + shell_quoted(out));
    EXPECT_NE(info.output.find("OmniQuant + W4 per-channel / A4 per-token-asym (cq quantize, format version 3)"), std::string::npos)
        << info.output;
    const test::CommandResult kernel = test::run_cq("kernel --model " + shell_quoted(out) + " --text " +
                                                    shell_quoted(test::shared_dir() / kEvalText) + " --seqlen 128 --max-windows 1");
    EXPECT_EQ(kernel.exit_code, 0) << kernel.output;
    // No integer kernels for its grids; no second quantization by export.
    const test::CommandResult integer = test::run_cq("ppl --model " + shell_quoted(out) + " --text " +
                                                     shell_quoted(test::shared_dir() / kEvalText) + " --engine int");
    EXPECT_EQ(integer.exit_code, 1);
    EXPECT_NE(integer.output.find("--engine int: " + out.string() + " holds OmniQuant's weights"), std::string::npos)
        << integer.output;
    const test::CommandResult exported = test::run_cq("export --model " + shell_quoted(out) + " --format compressed-tensors --out " +
                                                      shell_quoted(out.string() + "_export"));
    EXPECT_EQ(exported.exit_code, 1);
    EXPECT_NE(exported.output.find("is already quantized (OmniQuant + W4 per-channel / A4 per-token-asym); export from the "
                                   "unquantized model"),
              std::string::npos)
        << exported.output;
    EXPECT_FALSE(fs::exists(out.string() + "_export"));
  }
}

// A parameter file whose weights meet what the fixtures rarely produce: LET only (no LWC, so
// any group size), groups of 4 inputs (many runs of one sign: zero points outside 0..15), and
// a non-zero v → o shift (LLaMA's v_proj and o_proj gain biases the original lacks).
fs::path shifted_let_parameters(const std::string& model) {
  OmniQuantParameters parameters = read_omniquant_parameters(test::omniquant_fixtures() / (model + ".pth"));
  for (auto& layer : parameters.layers) {
    std::erase_if(layer, [](const auto& entry) { return entry.first.find("bound_factor") != std::string::npos; });
    std::vector<float>& shift = layer.at("out_smooth_shift").values;
    for (size_t k = 0; k < shift.size(); ++k) shift[k] = 0.05f * std::sin(static_cast<float>(k) + 1.f);
  }
  const fs::path file = test::scratch_dir("omniquant_checkpoint_params") / (model + "_shifted.pth");
  save_omniquant_parameters(parameters, file);
  return file;
}

QuantConfig omniquant_config(const fs::path& parameters, int bits, int64_t group_size) {
  QuantConfig config;  // as `cq quantize --method omniquant --omni-params P --wbits B --abits B [--weight-quant group]` resolves it
  config.method = "omniquant";
  config.omni_params = parameters.string();
  config.weight_bits = config.activation_bits = bits;
  config.activation_method = "per-token-asym";
  config.weight_method = group_size > 0 ? "group" : "per-channel";
  config.group_size = group_size > 0 ? group_size : 128;
  config.weight_asymmetric = group_size > 0;
  return config;
}

double perplexity(Transformer& model, std::span<const int32_t> tokens) {
  PerplexityOptions options;
  options.seqlen = 128;
  options.max_windows = 4;
  options.show_progress = false;
  return evaluate_perplexity(model, tokens, options).perplexity;
}

// Native calibration straight into a checkpoint (`cq quantize --method omniquant --calib`): the
// stored model is the one `cq ppl` trains in-process with the same flags, bit for bit.
TEST_P(OmniQuantCheckpoint, NativelyCalibratedCheckpointGivesTheInProcessPerplexity) {
  const std::string method = "--method omniquant --scheme w4a4 --calib " + shell_quoted(test::shared_dir() / kEvalText) +
                             " --calib-samples 2 --calib-seqlen 64 --epochs 1";
  const fs::path out = test::scratch_dir("omniquant_checkpoint_native_" + GetParam());
  fs::remove_all(out);
  const test::CommandResult quantized = test::run_cq("quantize --model " + shell_quoted(model_dir_) + " --out " + shell_quoted(out) + " " + method);
  ASSERT_EQ(quantized.exit_code, 0) << quantized.output;
  EXPECT_EQ(cq_ppl(out, ""), cq_ppl(model_dir_, method));
  const nlohmann::json q = test::read_config(out)["quantization_config"];
  EXPECT_EQ(q["method"], "omniquant");
  EXPECT_EQ(q["calibration"]["samples"], 2);
}

TEST_P(OmniQuantCheckpoint, UnclampedZeroPointsAndAddedBiasesRoundTrip) {
  const fs::path parameters = shifted_let_parameters(GetParam());
  const auto tokens = load_tokenizer(model_dir_)->encode(read_text_file(test::shared_dir() / kEvalText), true);
  for (const auto& [bits, group_size] : {std::pair{4, int64_t{4}}, std::pair{6, int64_t{0}}}) {
    SCOPED_TRACE(fmt::format("W{}A{} g{}", bits, bits, group_size));
    const QuantConfig config = omniquant_config(parameters, bits, group_size);
    const fs::path out = test::scratch_dir(fmt::format("omniquant_checkpoint_{}_shifted_w{}g{}", GetParam(), bits, group_size));
    {
      Transformer model(model_dir_);
      write_quantized_checkpoint(model, config, apply_transformation(model, config), {}, out);
    }
    Transformer in_process(model_dir_);
    apply_quantization(in_process, config);
    Transformer loaded = load_model(out);
    apply_quantization(loaded, QuantConfig{});
    for (size_t index = 0; index < loaded.linear_layers().size(); ++index) {
      const LinearLayer& expected = in_process.linear_layers()[index];
      EXPECT_EQ(loaded.linear_layers()[index].owned_weight, expected.owned_weight) << expected.name;
      EXPECT_EQ(loaded.linear_layers()[index].bias, expected.bias) << expected.name;
    }
    EXPECT_EQ(perplexity(loaded, tokens), perplexity(in_process, tokens));

    const auto tensors = test::read_raw_tensors(out / "model.safetensors");
    const nlohmann::json q = test::read_config(out)["quantization_config"];
    int64_t outside = 0;
    for (const LinearLayer& linear : in_process.linear_layers())
      for (int32_t zero : test::values_of<int32_t>(tensors.at(linear.name + ".weight_zero"))) outside += zero < 0 || zero > (1 << bits) - 1;
    if (group_size == 4) {
      EXPECT_GT(outside, 0) << "the case meant to store zero points outside the codes has none";
    }
    const Transformer original(model_dir_);
    std::vector<std::string> added;
    for (size_t index = 0; index < original.linear_layers().size(); ++index)
      if (original.linear_layers()[index].bias.empty() && !in_process.linear_layers()[index].bias.empty())
        added.push_back(original.linear_layers()[index].name);
    EXPECT_EQ(q["added_biases"].get<std::vector<std::string>>(), added);
    if (original.config().norm == NormKind::RMSNorm) {  // LLaMA: v_proj and o_proj of every layer
      EXPECT_EQ(added.size(), static_cast<size_t>(2 * original.config().num_layers));
      EXPECT_EQ(tensors.at(added.at(0) + ".bias").dtype, "F32");
    } else {
      EXPECT_TRUE(added.empty());  // OPT has every bias already
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Models, OmniQuantCheckpoint, testing::Values("stories260k", "tinyopt"));

// `cq export` from the source model writes OmniQuant's own codes and zero points (never
// re-rounded to nearest): the export's perplexity is the in-process one exactly. Per-channel
// OmniQuant (a zero point per row) has no pack-quantized form here and is refused.
class OmniQuantExport : public OmniQuantCheckpoint {};

TEST_P(OmniQuantExport, GroupWiseExportIsExactPerChannelRefused) {
  const fs::path out = test::scratch_dir("omniquant_export_" + GetParam()) / "export";
  const std::string weights = " --method omniquant --wbits 4 --abits 16 --omni-params ";
  const std::string grouped = weights + shell_quoted(test::omniquant_fixtures() / (GetParam() + "_g128.pth")) +
                              " --weight-quant group --group-size 128";
  const test::CommandResult exported = test::run_cq("export --model " + shell_quoted(model_dir_) +
                                                    " --format compressed-tensors --out " + shell_quoted(out) + grouped);
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  EXPECT_EQ(cq_ppl(out, ""), cq_ppl(model_dir_, grouped));
  const test::CommandResult channel = test::run_cq("export --model " + shell_quoted(model_dir_) + " --format compressed-tensors --out " +
                                                   shell_quoted(out.string() + "_channel") + weights +
                                                   shell_quoted(test::omniquant_fixtures() / (GetParam() + ".pth")));
  EXPECT_EQ(channel.exit_code, 1);
  EXPECT_NE(channel.output.find("OmniQuant's per-channel weights have a zero point per output channel"), std::string::npos)
      << channel.output;
}

// stories260k's down_proj reads 172 columns: no g128 export (compressed_tensors_shape_refusal).
INSTANTIATE_TEST_SUITE_P(Models, OmniQuantExport, testing::Values("tinyopt"));

// ---- refusals -------------------------------------------------------------------------------

TEST(OmniQuantCheckpointFile, BadFilesAreRefusedNamingFileAndTensor) {
  CQ_NEED_SHARED("models/stories260k");
  CQ_NEED_OMNIQUANT_FIXTURES();
  const fs::path model_dir = test::shared_dir() / "models/stories260k";
  const fs::path pristine = test::scratch_dir("omniquant_checkpoint_pristine");
  {
    Transformer model(model_dir);
    const QuantConfig config = omniquant_config(shifted_let_parameters("stories260k"), 4, 4);
    write_quantized_checkpoint(model, config, apply_transformation(model, config), {}, pristine);
  }
  const std::string q_proj = "model.layers.0.self_attn.q_proj", o_proj = "model.layers.1.self_attn.o_proj";
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct Refusal {
    std::string label;
    std::function<void(const fs::path&)> edit;
    std::vector<std::string> expected;  // substrings of the message
  };
  const auto tensors = [](std::function<void(std::map<std::string, test::RawTensor>&)> edit) {
    return [edit](const fs::path& dir) { test::edit_tensors(dir, edit); };
  };
  const auto config = [](std::function<void(nlohmann::json&)> edit) {
    return [edit](const fs::path& dir) {
      nlohmann::json json = test::read_config(dir);
      edit(json["quantization_config"]);
      test::write_config(dir, json);
    };
  };
  const std::vector<Refusal> refusals = {
      {"zero-point-beyond-bound", tensors([&](auto& t) { test::set_value<int32_t>(t[q_proj + ".weight_zero"], 17, 10001); }),
       {"model.safetensors", "'" + q_proj + ".weight_zero'", "zero point 10001 at [1, 1] is outside OmniQuant's bound [-10000, 10000]"}},
      {"zero-points-stored-as-u8", tensors([&](auto& t) {
         auto& zero = t[q_proj + ".weight_zero"];
         zero.dtype = "U8";
         zero.bytes.resize(zero.bytes.size() / 4);
       }),
       {"model.safetensors", "'" + q_proj + ".weight_zero' is U8 [64,16], expected I32 [64,16]"}},
      {"missing-zero-points", tensors([&](auto& t) { t.erase(q_proj + ".weight_zero"); }),
       {"model.safetensors", "missing tensor '" + q_proj + ".weight_zero'"}},
      {"scale-outside-clamp", tensors([&](auto& t) { test::set_value(t[q_proj + ".weight_scale"], 2, 2e4f); }),
       {"'" + q_proj + ".weight_scale'", "element 2 is 20000, outside OmniQuant's scale range"}},
      {"missing-added-bias", tensors([&](auto& t) { t.erase(o_proj + ".bias"); }),
       {"missing tensor '" + o_proj + ".bias'"}},
      {"bias-not-listed", config([&](auto& q) { q["added_biases"].erase(3); }),
       {"model.safetensors", "tensor '" + o_proj + ".bias' is present, but this linear has no bias"}},
      {"unknown-module-listed", config([](auto& q) { q["added_biases"].push_back("model.layers.9.mlp.up_proj"); }),
       {"config.json", "added_biases names 'model.layers.9.mlp.up_proj', which is not a decoder linear"}},
      {"nan-in-added-bias", tensors([&](auto& t) { test::set_value(t[o_proj + ".bias"], 5, nan); }),
       {"model.safetensors", "'" + o_proj + ".bias': element 5 is nan, expected a finite value"}},
      {"nan-in-folded-norm", tensors([&](auto& t) { test::set_value(t["model.layers.2.input_layernorm.weight"], 0, nan); }),
       {"'model.layers.2.input_layernorm.weight': element 0 is nan, expected a finite value"}},
      {"version-2", config([](auto& q) { q["format_version"] = 2; }),
       {"config.json", "method omniquant needs format_version 3 (I32 zero points), the file says 2"}},
      {"symmetric", config([](auto& q) { q["weight_symmetric"] = true; }),
       {"config.json", "OmniQuant's weights are asymmetric"}},
  };
  ASSERT_EQ(error_of([&] { Transformer model = load_model(pristine); }), "");
  ASSERT_EQ(test::read_config(pristine)["quantization_config"]["added_biases"][3], o_proj);
  for (const Refusal& r : refusals) {
    SCOPED_TRACE(r.label);
    const fs::path dir = test::scratch_dir("omniquant_checkpoint_bad_" + r.label);
    fs::copy(pristine, dir, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    r.edit(dir);
    const std::string message = error_of([&] { Transformer model = load_model(dir); });
    ASSERT_FALSE(message.empty()) << "accepted";
    for (const std::string& part : r.expected) EXPECT_NE(message.find(part), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace cq
