// Quantized checkpoints (`cq quantize`, format version 2; OmniQuant's version 3 is
// test_omniquant_checkpoint.cpp; docs/BASELINES.md): the file holds
// integer codes (I8, or U8 two a byte) with F32 scales and U8 zero points; decoding them by
// the documented layout gives the on-the-fly fake-quantized weights bit for bit; loading gives
// the on-the-fly perplexity bit for bit (fake engine) and the on-the-fly integer-engine
// perplexity (int engine, from the stored codes); bad files are refused naming file and tensor.
// Expected values come from the documented format decoded here by hand, and from the
// on-the-fly quantization path (the quantizers, checked against PyTorch elsewhere).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>

#include "eval/perplexity.h"
#include "io/safetensors.h"
#include "model/transformer.h"
#include "ptq/apply_quantization.h"
#include "quant/quant_config.h"
#include "ptq/quantized_checkpoint.h"
#include "checkpoint_test_support.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/text_file.h"

namespace cq {
namespace {

using test::error_of;

// ---- the file, read independently of the loader (checkpoint_test_support.h) -----------------

using test::edit_tensors;
using test::floats_of;
using test::fnv1a64;
using test::RawTensor;
using test::read_config;
using test::read_raw_tensors;
using test::write_config;

// ---- quantizing a generated model -----------------------------------------------------------

QuantConfig synthetic_config(const std::string& scheme, bool asymmetric) {
  QuantConfig config;
  config.method = "rtn";
  config.activation_method = "per-token";
  config.apply_scheme(scheme);
  if (config.weight_method == "group") config.group_size = 16;  // opt-pre: in = 32 or 64, several groups
  config.weight_asymmetric = asymmetric;
  return config;
}

std::filesystem::path quantize_synthetic(const std::string& name, const QuantConfig& config) {
  const auto out = test::scratch_dir(name);
  Transformer model(test::synthetic_model("opt-pre"));
  write_quantized_checkpoint(model, config, apply_transformation(model, config), {}, out);
  return out;
}

TEST(QuantizedCheckpoint, PackedNibbleLayout) {
  // Symmetric 4-bit codes (nibble = code + 8), odd column count: the last high nibble is 0.
  const std::vector<int16_t> symmetric = {1, -2, 3, -7, 7, 0};
  EXPECT_EQ(pack_nibbles(symmetric, 2, 3, 8), (std::vector<uint8_t>{0x69, 0x0b, 0xf1, 0x08}));
  // Asymmetric codes are stored as they are; even columns in the low nibble.
  const std::vector<int16_t> asymmetric = {0, 15, 4, 10};
  EXPECT_EQ(pack_nibbles(asymmetric, 1, 4, 0), (std::vector<uint8_t>{0xf0, 0xa4}));
  const std::vector<int16_t> too_big = {16};
  EXPECT_NE(error_of([&] { pack_nibbles(too_big, 1, 1, 0); }).find("does not fit a nibble"), std::string::npos);
}

// Decodes every quantized weight of the file by hand and compares with the weights that
// on-the-fly fake quantization computes; the loaded model holds the same values.
TEST(QuantizedCheckpoint, StoredCodesDecodeToTheFakeQuantizedWeights) {
  struct Case {
    std::string scheme;
    bool asymmetric;
    std::string codes_dtype;
  };
  for (const Case& c : {Case{"w8a8", false, "I8"}, Case{"w4a8-g128", false, "U8"}, Case{"w4a8-g128", true, "U8"},
                        Case{"w4a8", false, "U8"}}) {
    SCOPED_TRACE(c.scheme + (c.asymmetric ? " asymmetric" : ""));
    const QuantConfig config = synthetic_config(c.scheme, c.asymmetric);
    const auto dir = quantize_synthetic("qckpt-decode-" + c.scheme + (c.asymmetric ? "-asym" : ""), config);
    Transformer on_the_fly(test::synthetic_model("opt-pre"));
    apply_quantization(on_the_fly, config);
    Transformer loaded = load_model(dir);
    ASSERT_NE(stored_quantization(loaded), nullptr);
    const auto tensors = read_raw_tensors(dir / "model.safetensors");
    const bool packed = config.weight_bits <= 4;
    for (size_t index = 0; index < on_the_fly.linear_layers().size(); ++index) {
      const LinearLayer& linear = on_the_fly.linear_layers()[index];
      const int64_t out = linear.out_features, in = linear.in_features;
      const RawTensor& codes = tensors.at(linear.name + ".weight");
      ASSERT_EQ(codes.dtype, c.codes_dtype) << linear.name;
      ASSERT_EQ(codes.shape, (std::vector<int64_t>{out, packed ? (in + 1) / 2 : in})) << linear.name;
      if (packed) {
        const RawTensor& shape = tensors.at(linear.name + ".weight_shape");
        ASSERT_EQ(shape.dtype, "I32");
        int32_t logical[2];
        std::memcpy(logical, shape.bytes.data(), 8);
        EXPECT_EQ(logical[0], out);
        EXPECT_EQ(logical[1], in);
      }
      const int64_t groups = config.weight_method == "group" ? (in + config.group_size - 1) / config.group_size : 1;
      const RawTensor& scale_tensor = tensors.at(linear.name + ".weight_scale");
      ASSERT_EQ(scale_tensor.dtype, "F32");
      ASSERT_EQ(scale_tensor.shape, (std::vector<int64_t>{out, groups}));
      const std::vector<float> scales = floats_of(scale_tensor);
      EXPECT_EQ(tensors.count(linear.name + ".weight_zero"), c.asymmetric ? 1u : 0u);
      for (int64_t i = 0; i < out; ++i)
        for (int64_t j = 0; j < in; ++j) {
          int code;
          if (packed) {
            const uint8_t byte = codes.bytes[static_cast<size_t>(i * ((in + 1) / 2) + j / 2)];
            code = (j % 2 == 0 ? byte & 0xf : byte >> 4) - (c.asymmetric ? 0 : 8);
          } else {
            code = static_cast<int8_t>(codes.bytes[static_cast<size_t>(i * in + j)]);
          }
          const auto group = static_cast<size_t>(i * groups + j / (config.weight_method == "group" ? config.group_size : in));
          const float zero = c.asymmetric ? static_cast<float>(tensors.at(linear.name + ".weight_zero").bytes[group]) : 0.f;
          const float decoded = (static_cast<float>(code) - zero) * scales[group];
          const auto at = static_cast<size_t>(i * in + j);
          ASSERT_EQ(decoded, linear.owned_weight[at]) << linear.name << " [" << i << ", " << j << "]";
          ASSERT_EQ(loaded.linear_layers()[index].owned_weight[at], linear.owned_weight[at]) << linear.name;
        }
    }
    // Biases, norms and embeddings stay F32.
    EXPECT_EQ(tensors.at("model.decoder.layers.0.fc1.bias").dtype, "F32");
    EXPECT_EQ(tensors.at("model.decoder.embed_tokens.weight").dtype, "F32");
    EXPECT_EQ(loaded.parameter_count(), on_the_fly.parameter_count());
  }
}

TEST(QuantizedCheckpoint, ConfigRecordsTheQuantization) {
  QuantConfig config = synthetic_config("w4a8-g128", true);
  const auto dir = quantize_synthetic("qckpt-config", config);
  const auto q = read_config(dir)["quantization_config"];
  EXPECT_EQ(q["format"], "crossquant-quantized");
  EXPECT_EQ(q["format_version"], 2);
  EXPECT_EQ(q["method"], "rtn");
  EXPECT_EQ(q["wbits"], 4);
  EXPECT_EQ(q["abits"], 8);
  EXPECT_EQ(q["weight_granularity"], "group");
  EXPECT_EQ(q["group_size"], 16);
  EXPECT_EQ(q["weight_symmetric"], false);
  EXPECT_TRUE(q["weight_alpha"].is_null());
  EXPECT_EQ(q["activation_method"], "per-token");
  EXPECT_EQ(q["activation_scales"], "dynamic (per window)");
  EXPECT_TRUE(q["alpha"].is_null());
  EXPECT_TRUE(q["calibration"].is_null());
  EXPECT_NE(q["weight_storage"]["codes"].get<std::string>().find("low nibble = even input column"), std::string::npos);
  EXPECT_EQ(q["weights_checksum"], fnv1a64(dir / "model.safetensors"));
  const Transformer loaded = load_model(dir);  // owns what stored_quantization() points to
  const StoredQuantization* stored = stored_quantization(loaded);
  ASSERT_NE(stored, nullptr);
  EXPECT_EQ(stored->config.describe(), config.describe());
}

// CrossQuant weights keep their column factors c_j^(1−α_W): dequantization is exact.
TEST(QuantizedCheckpoint, CrossQuantWeightsStoreTheirColumnFactors) {
  QuantConfig config = synthetic_config("w8a8", false);
  config.weight_method = "crossquant";
  config.weight_alpha = 0.55;
  const auto dir = quantize_synthetic("qckpt-crossquant-weights", config);
  const auto tensors = read_raw_tensors(dir / "model.safetensors");
  const RawTensor& factors = tensors.at("model.decoder.layers.1.fc2.weight_column_factor");
  EXPECT_EQ(factors.dtype, "F32");
  EXPECT_EQ(factors.shape, (std::vector<int64_t>{64}));
  EXPECT_EQ(read_config(dir)["quantization_config"]["weight_alpha"], 0.55);
  Transformer on_the_fly(test::synthetic_model("opt-pre"));
  apply_quantization(on_the_fly, config);
  Transformer loaded = load_model(dir);
  for (size_t index = 0; index < loaded.linear_layers().size(); ++index)
    EXPECT_EQ(loaded.linear_layers()[index].owned_weight, on_the_fly.linear_layers()[index].owned_weight) << index;
}

// ---- refusals -------------------------------------------------------------------------------

struct Refusal {
  std::string label;
  std::string scheme;  // of the checkpoint edited
  bool asymmetric;
  std::function<void(const std::filesystem::path&)> edit;
  std::vector<std::string> expected;  // substrings of the message
};

const std::string kQ = "model.decoder.layers.0.self_attn.q_proj";

std::function<void(const std::filesystem::path&)> tensor_edit(std::function<void(std::map<std::string, RawTensor>&)> edit) {
  return [edit](const std::filesystem::path& dir) { edit_tensors(dir, edit); };
}

std::function<void(const std::filesystem::path&)> config_edit(std::function<void(nlohmann::json&)> edit) {
  return [edit](const std::filesystem::path& dir) {
    auto config = read_config(dir);
    edit(config["quantization_config"]);
    write_config(dir, config);
  };
}

std::vector<Refusal> refusals() {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  return {
      {"code-out-of-range-i8", "w8a8", false, tensor_edit([](auto& t) { t[kQ + ".weight"].bytes[0] = 0x80; }),
       {"model.safetensors", "'" + kQ + ".weight'", "code -128 at [0, 0] is outside [-127, 127] for 8-bit symmetric"}},
      {"code-out-of-range-packed", "w4a8-g128", false, tensor_edit([](auto& t) { t[kQ + ".weight"].bytes[3] = 0x80; }),
       {"model.safetensors", "'" + kQ + ".weight'", "code -8 at [0, 6] is outside [-7, 7] for 4-bit symmetric"}},
      {"zero-point-out-of-range", "w4a8-g128", true, tensor_edit([](auto& t) { t[kQ + ".weight_zero"].bytes[1] = 16; }),
       {"model.safetensors", "'" + kQ + ".weight_zero'", "zero point 16 at 1 is above 15"}},
      {"missing-scale", "w8a8", false, tensor_edit([](auto& t) { t.erase(kQ + ".weight_scale"); }),
       {"model.safetensors", "missing tensor '" + kQ + ".weight_scale'"}},
      {"missing-zero-point", "w4a8-g128", true, tensor_edit([](auto& t) { t.erase(kQ + ".weight_zero"); }),
       {"model.safetensors", "missing tensor '" + kQ + ".weight_zero'"}},
      {"missing-packed-shape", "w4a8-g128", false, tensor_edit([](auto& t) { t.erase(kQ + ".weight_shape"); }),
       {"model.safetensors", "missing tensor '" + kQ + ".weight_shape'"}},
      {"scale-shape-mismatch", "w8a8", false, tensor_edit([](auto& t) { t[kQ + ".weight_scale"].shape = {1, 32}; }),
       {"model.safetensors", "'" + kQ + ".weight_scale' is F32 [1,32], expected F32 [32,1]"}},
      {"group-scale-shape-mismatch", "w4a8-g128", true, tensor_edit([](auto& t) {
         auto& s = t[kQ + ".weight_scale"];
         s.shape = {32, 1};
         s.bytes.resize(32 * 4);
       }),
       {"model.safetensors", "'" + kQ + ".weight_scale' is F32 [32,1], expected F32 [32,2]"}},
      {"nan-scale", "w8a8", false, tensor_edit([nan](auto& t) { test::set_value(t[kQ + ".weight_scale"], 3, nan); }),
       {"model.safetensors", "'" + kQ + ".weight_scale'", "element 3 is nan, expected a finite positive scale"}},
      {"inf-scale", "w4a8-g128", false, tensor_edit([inf](auto& t) { test::set_value(t[kQ + ".weight_scale"], 5, inf); }),
       {"model.safetensors", "'" + kQ + ".weight_scale'", "element 5 is inf"}},
      {"zero-scale", "w8a8", false, tensor_edit([](auto& t) { test::set_value(t[kQ + ".weight_scale"], 0, 0.f); }),
       {"'" + kQ + ".weight_scale'", "element 0 is 0, expected a finite positive scale"}},
      {"codes-stored-as-floats", "w8a8", false, tensor_edit([](auto& t) {
         auto& w = t[kQ + ".weight"];
         w.dtype = "F32";
         w.bytes.resize(w.bytes.size() * 4);
       }),
       {"model.safetensors", "'" + kQ + ".weight' is F32 [32,32], expected I8 [32,32]"}},
      {"packed-shape-mismatch", "w4a8-g128", false, tensor_edit([](auto& t) {
         const int32_t wrong[2] = {32, 30};
         std::memcpy(t[kQ + ".weight_shape"].bytes.data(), wrong, 8);
       }),
       {"model.safetensors", "'" + kQ + ".weight_shape' is [32, 30], config.json implies [32, 32]"}},
      {"zero-point-on-symmetric-weights", "w4a8-g128", false, tensor_edit([](auto& t) {
         t[kQ + ".weight_zero"] = RawTensor{"U8", {32, 2}, std::vector<uint8_t>(64, 8)};
       }),
       {"model.safetensors", "'" + kQ + ".weight_zero' is present, but the weights are symmetric"}},
      {"tampered-without-checksum", "w8a8", false,
       [](const std::filesystem::path& dir) {
         std::fstream file(dir / "model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
         file.seekg(-5, std::ios::end);
         const char byte = static_cast<char>(file.get() ^ 0x40);
         file.seekp(-5, std::ios::end);
         file.put(byte);
       },
       {"model.safetensors", "do not match weights_checksum"}},
      {"truncated", "w4a8-g128", true,
       [](const std::filesystem::path& dir) {
         std::filesystem::resize_file(dir / "model.safetensors", std::filesystem::file_size(dir / "model.safetensors") - 100);
       },
       {"model.safetensors", "truncated"}},
      {"unknown-version", "w8a8", false, config_edit([](auto& q) { q["format_version"] = 99; }),
       {"config.json", "format_version 99 is not supported (this cq reads versions 2 to 3)"}},
      {"version-1", "w8a8", false, config_edit([](auto& q) { q["format"] = "crossquant-fake-quantized-v1"; }),
       {"config.json", "is no longer read; run cq quantize again"}},
      {"malformed-config", "w8a8", false, config_edit([](auto& q) { q.erase("wbits"); }),
       {"config.json", "malformed", "wbits"}},
  };
}

TEST(QuantizedCheckpoint, BadCheckpointsAreRefusedNamingFileAndTensor) {
  std::map<std::string, std::filesystem::path> pristine;
  for (const Refusal& r : refusals()) {
    SCOPED_TRACE(r.label);
    const std::string key = r.scheme + (r.asymmetric ? "-asym" : "");
    if (!pristine.count(key)) pristine[key] = quantize_synthetic("qckpt-pristine-" + key, synthetic_config(r.scheme, r.asymmetric));
    const auto dir = test::scratch_dir("qckpt-bad-" + r.label);
    std::filesystem::copy(pristine[key], dir,
                          std::filesystem::copy_options::recursive | std::filesystem::copy_options::overwrite_existing);
    r.edit(dir);
    const std::string message = error_of([&] { Transformer model = load_model(dir); });
    ASSERT_FALSE(message.empty()) << "accepted";
    for (const std::string& part : r.expected) EXPECT_NE(message.find(part), std::string::npos) << message;
  }
}

// ---- the shared models: perplexity through the file equals quantizing on the fly ----------

constexpr const char* kCalibText = "data/wikitext2/wikitext2_test_joined.prefix.txt";
constexpr const char* kEvalText = "data/tinystories/TinyStories-valid.first100.txt";

struct RoundTrip {
  std::string model, method, scheme;
  std::string weight_method;  // "" = the scheme's
  bool static_activations = false;
  bool integer_engine = false;  // also compare --engine int: on the fly vs the stored codes
};

void PrintTo(const RoundTrip& c, std::ostream* out) { *out << c.model << "_" << c.method << "_" << c.scheme; }

class QuantizedCheckpointShared : public testing::TestWithParam<RoundTrip> {};

double perplexity(Transformer& model, std::span<const int32_t> tokens) {
  PerplexityOptions options;
  options.seqlen = 256;
  options.max_windows = 8;
  options.show_progress = false;
  return evaluate_perplexity(model, tokens, options).perplexity;
}

TEST_P(QuantizedCheckpointShared, PerplexityEqualsQuantizingOnTheFly) {
  const RoundTrip& c = GetParam();
  CQ_NEED_SHARED("models/" + c.model);
  CQ_NEED_SHARED(kCalibText);
  CQ_NEED_SHARED(kEvalText);
  const auto model_dir = test::shared_dir() / "models" / c.model;
  const auto tokenizer = load_tokenizer(model_dir);
  const auto calibration = tokenizer->encode(read_text_file(test::shared_dir() / kCalibText), true);
  const auto eval = tokenizer->encode(read_text_file(test::shared_dir() / kEvalText), true);
  // As `cq quantize` resolves the flags: per-token activations for rtn/smoothquant/awq, AWQ's
  // group-wise weights asymmetric.
  QuantConfig config;
  config.method = c.method;
  config.apply_scheme(c.scheme);
  if (!c.weight_method.empty()) config.weight_method = c.weight_method;
  config.weight_asymmetric = c.method == "awq" && config.weight_method == "group";
  config.activation_method = c.method == "crossquant" ? "crossquant" : "per-token";
  config.static_columns = c.static_activations;
  config.calib_source = kCalibText;
  config.calib_samples = 4;
  config.calib_seqlen = 256;
  const bool calibrated = config.needs_calibration();
  const std::span<const int32_t> calib = calibrated ? std::span<const int32_t>(calibration) : std::span<const int32_t>();

  const auto out = test::scratch_dir("qckpt-shared-" + c.model + "-" + c.method + "-" + c.scheme + c.weight_method +
                                     (c.static_activations ? "-static" : ""));
  {
    Transformer model(model_dir);
    const QuantizationRecord record = apply_transformation(model, config, calib);
    write_quantized_checkpoint(model, config, record, calibrate_static_activations(model, config, calib), out);
  }
  // The file holds integer codes: I8 above 4 bits (symmetric), U8 two a byte at 4 bits.
  const auto header = read_raw_tensors(out / "model.safetensors");
  Transformer on_the_fly(model_dir);
  apply_quantization(on_the_fly, config, calib);
  for (const LinearLayer& linear : on_the_fly.linear_layers()) {
    const RawTensor& codes = header.at(linear.name + ".weight");
    EXPECT_EQ(codes.dtype, config.weight_bits > 4 ? "I8" : "U8") << linear.name;
    EXPECT_EQ(codes.shape[1], config.weight_bits > 4 ? linear.in_features : (linear.in_features + 1) / 2) << linear.name;
  }
  Transformer loaded = load_model(out);
  ASSERT_NE(stored_quantization(loaded), nullptr);
  apply_quantization(loaded, QuantConfig{}, {});
  const double expected = perplexity(on_the_fly, eval);
  EXPECT_EQ(perplexity(loaded, eval), expected);
  EXPECT_NE(error_of([&] { apply_quantization(loaded, config, calib); }).find("already quantized"), std::string::npos);

  if (c.integer_engine) {
    QuantConfig integer = config;
    integer.engine = "int";
    Transformer int_on_the_fly(model_dir);
    apply_quantization(int_on_the_fly, integer, calib);
    Transformer int_loaded = load_model(out);
    QuantConfig run;
    run.engine = "int";
    apply_quantization(int_loaded, run, {});
    const double want = perplexity(int_on_the_fly, eval), got = perplexity(int_loaded, eval);
    std::cout << "[ perplexity ] int on the fly " << want << ", int from the checkpoint " << got << " (fake " << expected << ")\n";
    EXPECT_LE(std::abs(got - want) / want, 1e-3) << "on the fly " << want << " checkpoint " << got;
    // No FP32 copy of the weights is kept: the stored codes run as they are.
    for (const LinearLayer& linear : int_loaded.linear_layers()) EXPECT_TRUE(linear.owned_weight.empty()) << linear.name;
  }
  if (c.static_activations) {  // static CrossQuant stores Q(W·diag(f)) and f (folds_static_columns)
    for (const LinearLayer& linear : on_the_fly.linear_layers()) {
      const RawTensor& divisors = header.at(linear.name + ".weight_column_divisor");
      EXPECT_EQ(divisors.dtype, "F32") << linear.name;
      EXPECT_EQ(divisors.shape, std::vector<int64_t>{linear.in_features}) << linear.name;
    }
  }
  if (config.activation_method == "crossquant" && !c.static_activations) {  // no integer path from stored codes
    Transformer refused = load_model(out);
    QuantConfig run;
    run.engine = "int";
    const std::string message = error_of([&] { apply_quantization(refused, run, {}); });
    EXPECT_NE(message.find(config.weight_method == "crossquant"
                               ? "--engine int: --weight-quant crossquant has no integer kernel (per-channel, group)"
                               : "--engine int: dynamic CrossQuant folds each window's c^(1−α) into the FP32 weights"),
              std::string::npos)
        << message;
  }
}

std::vector<RoundTrip> round_trips() {
  std::vector<RoundTrip> cases;
  for (const char* model : {"tinyopt", "stories260k"}) {
    for (const char* method : {"rtn", "crossquant", "smoothquant", "awq"})
      for (const char* scheme : {"w8a8", "w4a8-g128"}) {
        const bool integer = (std::string(method) == "smoothquant" && std::string(scheme) == "w8a8") ||
                             (std::string(method) == "awq" && std::string(scheme) == "w4a8-g128");
        cases.push_back({model, method, scheme, "", false, integer});
      }
    cases.push_back({model, "crossquant", "w8a8", "crossquant", false, false});  // column factors
    cases.push_back({model, "crossquant", "w4a8-g128", "", true, true});          // static CrossQuant: folded codes
    cases.push_back({model, "crossquant", "w8a8", "", true, true});
    cases.push_back({model, "rtn", "w4a4", "", false, true});                      // per-channel INT4
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Shared, QuantizedCheckpointShared, testing::ValuesIn(round_trips()),
                         [](const testing::TestParamInfo<RoundTrip>& param_info) {
                           const RoundTrip& c = param_info.param;
                           std::string name = c.model + "_" + c.method + "_" + c.scheme +
                                              (c.weight_method.empty() ? "" : "_w" + c.weight_method) +
                                              (c.static_activations ? "_static" : "");
                           for (char& ch : name)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return name;
                         });

// `cq quantize`, then `cq ppl` and `cq info` on the result.
TEST(QuantizedCheckpointCli, QuantizeThenPerplexity) {
  CQ_NEED_SHARED("models/tinyopt");
  CQ_NEED_SHARED(kCalibText);
  CQ_NEED_SHARED(kEvalText);
  const auto model = (test::shared_dir() / "models/tinyopt").string();
  const auto calib = (test::shared_dir() / kCalibText).string();
  const auto text = (test::shared_dir() / kEvalText).string();
  const auto out = test::scratch_dir("qckpt-cli").string();
  const std::string flags = "--method awq --calib '" + calib + "' --calib-samples 4 --calib-seqlen 128";
  const auto quantize = test::run_cq("quantize --model '" + model + "' " + flags + " --out '" + out + "'");
  ASSERT_EQ(quantize.exit_code, 0) << quantize.output;
  const std::string ppl = " --text '" + text + "' --seqlen 128 --max-windows 4";
  const auto perplexity_in = [](const std::string& file) {
    return nlohmann::json::parse(read_text_file(file))["perplexity"].get<double>();
  };
  for (const std::string engine : {"fake", "int"}) {
    SCOPED_TRACE(engine);
    const std::string direct_json = out + "-direct-" + engine + ".json", stored_json = out + "-stored-" + engine + ".json";
    const auto direct = test::run_cq("ppl --model '" + model + "' " + flags + ppl + " --engine " + engine + " --json '" + direct_json + "'");
    const auto stored = test::run_cq("ppl --model '" + out + "'" + ppl + " --engine " + engine + " --json '" + stored_json + "'");
    ASSERT_EQ(direct.exit_code, 0) << direct.output;
    ASSERT_EQ(stored.exit_code, 0) << stored.output;
    EXPECT_EQ(perplexity_in(stored_json), perplexity_in(direct_json));
    // The run describes the stored quantization it used.
    EXPECT_NE(stored.output.find("AWQ + W4 g128 asym / A8 per-token"), std::string::npos) << stored.output;
  }
  const auto info = test::run_cq("info --model '" + out + "'");
  EXPECT_EQ(info.exit_code, 0) << info.output;
  EXPECT_NE(info.output.find("quantized    AWQ + W4 g128 asym / A8 per-token (cq quantize, format version 2)"), std::string::npos)
      << info.output;
  const auto again = test::run_cq("quantize --model '" + out + "' --scheme w8a8 --out '" + out + "-2'");
  EXPECT_NE(again.output.find("is already a quantized checkpoint"), std::string::npos) << again.output;
}

}  // namespace
}  // namespace cq
