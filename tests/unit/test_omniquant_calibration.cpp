// OmniQuant calibration (ptq/omniquant_block.h, ptq/omniquant_calibration.h): the fake
// quantizer on hand-computed cases, the hand-written gradients of whole OPT and LLaMA blocks
// against PyTorch autograd, and a short whole calibration against the plain-PyTorch
// implementation of the same algorithm (tests/reference/omniquant_calibration_reference.py, goldens in
// tests/golden/omniquant/). Tolerances are stated where they are checked.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "model/transformer.h"
#include "ptq/omniquant_block.h"
#include "ptq/omniquant_calibration.h"
#include "test_support.h"
#include "util/text_file.h"

namespace cq {
namespace {

std::vector<float> floats(const nlohmann::json& array) { return array.get<std::vector<float>>(); }

OmniQuantSettings settings_of(const nlohmann::json& s) {
  OmniQuantSettings settings;
  settings.weight_bits = s["wbits"].get<int>();
  settings.activation_bits = s["abits"].get<int>();
  settings.group_size = s["group"].get<int64_t>();
  settings.lwc = s["lwc"].get<bool>();
  settings.let = s["let"].get<bool>();
  settings.shift = s["shift"].get<bool>();
  return settings;
}

OmniQuantLayerParameters named_of(const nlohmann::json& object) {
  OmniQuantLayerParameters named;
  for (const auto& [name, values] : object.items()) named[name] = {{}, floats(values)};
  return named;
}

double squared_norm(const std::vector<float>& v) {
  double sum = 0;
  for (float x : v) sum += static_cast<double>(x) * x;
  return sum;
}

// ‖a − b‖ / ‖b‖.
double relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    diff += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    norm += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(diff / std::max(norm, 1e-30));
}

TEST(OmniQuantBlock, FakeQuantizerHandComputed) {
  // Range [-1, 2], 2 bits: step 1, zero point 1; -0.4 → code 1 → 0, 0.6 → 2 → 1, 2 → 3 → 2.
  const std::vector<float> x = {-1.f, -0.4f, 0.6f, 2.f};
  std::vector<float> y(4);
  omni_fake_quantize(x.data(), 1, 4, 2, nullptr, nullptr, y.data());
  EXPECT_FLOAT_EQ(y[0], -1.f);
  EXPECT_FLOAT_EQ(y[1], 0.f);
  EXPECT_FLOAT_EQ(y[2], 1.f);
  EXPECT_FLOAT_EQ(y[3], 2.f);
  // Clipping factor logit 0: σ = 0.5, range [-0.5, 1], step 0.5, zero point 1: 2 clips to code 3 → 1.
  const float half = 0.f;
  omni_fake_quantize(x.data(), 1, 4, 2, &half, &half, y.data());
  EXPECT_FLOAT_EQ(y[3], 1.f);
  EXPECT_FLOAT_EQ(y[0], -0.5f);
  // Backward with dy = 1 everywhere.
  const std::vector<float> dy = {1.f, 1.f, 1.f, 1.f};
  std::vector<float> dx(4);
  float dup = 0, dlow = 0;
  omni_fake_quantize_backward(x.data(), dy.data(), 1, 4, 2, &half, &half, dx.data(), &dup, &dlow);
  // s = 0.5, z = 1; t = x/s = (-2, -0.8, 1.2, 4); codes clamp(round(t) + 1) = (0, 0, 2, 3);
  // inside: (no: -1, yes: 0, yes: 2, no: 5). ds = Σ(code − z) − Σ_inside t = (−1 −1 +1 +2) − (−0.8 + 1.2) = 0.6.
  // range gradient = ds / 3 = 0.2; dup = 0.2 · max · σ'(0) = 0.2 · 2 · 0.25 = 0.1;
  // dlow = −0.2 · min · 0.25 = 0.05; max element gets 0.2 · 0.5, min element −0.2 · 0.5.
  EXPECT_NEAR(dup, 0.1f, 1e-6);
  EXPECT_NEAR(dlow, 0.05f, 1e-6);
  EXPECT_NEAR(dx[0], -0.1f, 1e-6);  // clipped, but the min of the range
  EXPECT_NEAR(dx[1], 1.f, 1e-6);
  EXPECT_NEAR(dx[2], 1.f, 1e-6);
  EXPECT_NEAR(dx[3], 0.1f, 1e-6);  // clipped, the max
}

// ------------------------------------------------------------------ gradients vs autograd

class OmniQuantGradients : public ::testing::TestWithParam<std::string> {};

// The reference evaluates the same function in float64 autograd; ours runs in float32, so a
// value that lands within float32 rounding of a .5 code boundary may round the other way and
// move that element's straight-through terms. Tolerance 2e-3 relative per tensor
// (‖ours − ref‖ / ‖ref‖), loss 1e-4: a wrong term (a planted sign or factor error) moves a
// tensor by O(1).
TEST_P(OmniQuantGradients, MatchAutograd) {
  const auto golden = nlohmann::json::parse(read_text_file(test::source_dir() / "tests/golden/omniquant" / GetParam()));
  const std::string model_name = golden["model"].get<std::string>();
  CQ_NEED_SHARED("models/" + model_name);
  Transformer model(test::shared_dir() / "models" / model_name);
  const OmniBlockWeights block = omni_block_weights(model, golden["layer"].get<int64_t>());
  const OmniQuantSettings settings = settings_of(golden["settings"]);
  const OmniBlockParameters parameters = omni_block_parameters(named_of(golden["parameters"]), model.config());
  OmniBlockParameters gradients = omni_zero_like(parameters);
  const auto x = floats(golden["x"]), target = floats(golden["target"]);
  auto workspace = make_omni_workspace();
  const double loss = omni_block_run(block, parameters, settings, true, x.data(), golden["length"].get<int64_t>(),
                                     target.data(), nullptr, &gradients, *workspace);
  EXPECT_NEAR(loss, golden["loss"].get<double>(), 1e-4 * golden["loss"].get<double>());
  const OmniQuantLayerParameters named = omniquant_layer_parameters(gradients, model.config());
  // A gradient that is zero up to cancellation (qkt_smooth_scale without q/k quantization:
  // q/s and k·s cancel in q·kᵀ) is compared against a floor of 1e-5 × the largest tensor norm.
  double largest = 0;
  for (const auto& [name, reference] : golden["gradients"].items())
    largest = std::max(largest, std::sqrt(squared_norm(floats(reference))));
  int compared = 0;
  for (const auto& [name, reference] : golden["gradients"].items()) {
    ASSERT_TRUE(named.count(name)) << name;
    const auto theirs = floats(reference);
    const double norm = std::sqrt(squared_norm(theirs));
    const double difference = relative_difference(named.at(name).values, theirs) * norm;
    EXPECT_LT(difference, 2e-3 * norm + 1e-5 * largest) << name;
    ++compared;
  }
  EXPECT_EQ(compared, static_cast<int>(named.size()));
}

INSTANTIATE_TEST_SUITE_P(Blocks, OmniQuantGradients,
                         ::testing::Values("grad_tinyopt_w4a4.json", "grad_tinyopt_w4a16g32.json",
                                           "grad_stories260k_w4a4.json"),
                         [](const auto& test_info) {
                           std::string name = test_info.param.substr(5, test_info.param.size() - 10);
                           for (char& ch : name)
                             if (ch == '.') ch = '_';
                           return name;
                         });

// ------------------------------------------------------------ whole calibration vs reference

class OmniQuantCalibration : public ::testing::TestWithParam<std::string> {};

TEST_P(OmniQuantCalibration, MatchesReference) {
  const auto golden = nlohmann::json::parse(read_text_file(test::source_dir() / "tests/golden/omniquant" / GetParam()));
  const std::string model_name = golden["model"].get<std::string>();
  CQ_NEED_SHARED("models/" + model_name);
  Transformer model(test::shared_dir() / "models" / model_name);
  OmniQuantCalibrationOptions options;
  options.samples = golden["samples"].get<int64_t>();
  options.seqlen = golden["seqlen"].get<int64_t>();
  options.epochs = golden["epochs"].get<int64_t>();
  options.lwc_lr = golden["lwc_lr"].get<double>();
  options.let_lr = golden["let_lr"].get<double>();
  options.weight_decay = golden["weight_decay"].get<double>();
  options.alpha = golden["alpha"].get<double>();
  options.settings = settings_of(golden["settings"]);
  options.show_progress = false;
  std::vector<double> losses;
  options.on_epoch = [&](int64_t, int64_t, double loss) { losses.push_back(loss); };
  std::vector<int32_t> tokens(static_cast<size_t>(options.samples * options.seqlen));
  const auto vocab = model.config().vocab_size;
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((static_cast<int64_t>(i) * 7919 + 13) % vocab);
  const OmniQuantParameters result = calibrate_omniquant(model, tokens, options);
  ASSERT_EQ(result.layers.size(), golden["layers"].size());
  // The golden is the float64 reference; its `float32_drift` says how far PyTorch's own
  // float32 run of the same algorithm lands from it (per layer, the worst |Δp| / max(1, |p|);
  // per epoch, |Δloss| / loss). Flipped rounding decisions change straight-through gradients
  // and AdamW turns small gradient differences into whole steps, so float32 arithmetic alone
  // costs that much (up to a few % on tinyopt, 3e-7 on stories260k's first layer). Tolerance:
  // twice that drift, at least 1e-3 (parameters) and 1e-4 (losses).
  const auto& drift = golden["float32_drift"];
  for (size_t layer = 0; layer < result.layers.size(); ++layer) {
    const auto& reference = golden["layers"][layer];
    ASSERT_EQ(result.layers[layer].size(), reference.size()) << "layer " << layer;
    double worst = 0;
    for (const auto& [name, values] : reference.items()) {
      ASSERT_TRUE(result.layers[layer].count(name)) << name;
      const auto& ours = result.layers[layer].at(name).values;
      const auto theirs = floats(values);
      ASSERT_EQ(ours.size(), theirs.size()) << name;
      for (size_t i = 0; i < ours.size(); ++i)
        worst = std::max(worst, std::abs(static_cast<double>(ours[i]) - theirs[i]) / std::max(1.0, std::abs(static_cast<double>(theirs[i]))));
    }
    EXPECT_LE(worst, std::max(2 * drift["layers"][layer].get<double>(), 1e-3)) << "layer " << layer;
  }
  ASSERT_EQ(losses.size(), golden["losses"].size());
  double drift_so_far = 0;  // the drift is a random walk over the layers: its running maximum
  for (size_t i = 0; i < losses.size(); ++i) {
    const double reference = golden["losses"][i]["loss"].get<double>();
    drift_so_far = std::max(drift_so_far, drift["losses"][i].get<double>());
    const double allowed = std::max(2 * drift_so_far, 1e-4);
    EXPECT_LE(std::abs(losses[i] - reference) / reference, allowed) << "epoch entry " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Models, OmniQuantCalibration,
                         ::testing::Values("calib_tinyopt_w4a4.json", "calib_stories260k_w4a4.json",
                                           // --epochs 0: OmniQuant's initialisation alone
                                           "calib_tinyopt_w4a4_init.json", "calib_stories260k_w6a6_init.json"),
                         [](const auto& test_info) {
                           std::string name = test_info.param.substr(6, test_info.param.size() - 11);
                           return name;
                         });

TEST(OmniQuantCli, RefusesBadFlags) {
  CQ_NEED_SHARED("models/tinyopt");
  const std::string model = (test::shared_dir() / "models/tinyopt").string();
  const std::string calib = (test::shared_dir() / "data/wikitext2/wikitext2_test_joined.prefix.txt").string();
  const auto out = (test::scratch_dir("omni_cli") / "p.pth").string();
  const auto base = "omniquant-calibrate --model '" + model + "' --calib '" + calib + "' --out '" + out + "'";
  auto run = test::run_cq(base + " --scheme w4x4");
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.output.find("--scheme w4x4: expected wWaA"), std::string::npos) << run.output;
  run = test::run_cq(base + " --scheme w16a4");
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.output.find("quantize the weights"), std::string::npos) << run.output;
  run = test::run_cq(base + " --epochs -1");
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.output.find("--epochs must be zero or positive"), std::string::npos) << run.output;
  run = test::run_cq(base + " --calib-seqlen 100000");
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.output.find("exceeds the model's 512 positions"), std::string::npos) << run.output;
  EXPECT_FALSE(std::filesystem::exists(out));
  run = test::run_cq(base + " --scheme w4a16-g32 --calib-samples 2 --calib-seqlen 32 --epochs 1 --quiet");
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_TRUE(std::filesystem::exists(out));
}

// The parameter file: what torch.load (PyTorch's own reader) makes of it.
TEST(OmniQuantParametersFile, TorchLoadReadsIt) {
  if (test::run_shell("/usr/bin/python3 -c 'import torch'").exit_code != 0)
    GTEST_SKIP() << "/usr/bin/python3 with torch is not available";
  OmniQuantParameters parameters;
  for (int layer = 0; layer < 2; ++layer) {
    OmniQuantLayerParameters named;
    named["qkv_smooth_scale"] = {{3}, {0.5f, -1.25f, 3e-8f + static_cast<float>(layer)}};
    named["self_attn.q_proj.weight_quantizer.upbound_factor"] = {{2, 1}, {4.f, -4.5f}};
    named["fc1.weight_quantizer.lowbound_factor"] = {{4, 1}, {1.f, 2.f, 3.f, static_cast<float>(layer)}};
    parameters.layers.push_back(named);
  }
  const auto file = test::scratch_dir("omni_params") / "omni_parameters.pth";
  save_omniquant_parameters(parameters, file);
  const auto run = test::run_shell("/usr/bin/python3 '" + (test::source_dir() / "tests/reference/omniquant_calibration_reference.py").string() +
                                   "' --load '" + file.string() + "'");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const auto loaded = nlohmann::json::parse(run.output.substr(run.output.find('{')));
  ASSERT_EQ(loaded.size(), 2u);
  for (int layer = 0; layer < 2; ++layer) {
    const auto& entries = loaded[std::to_string(layer)];
    ASSERT_EQ(entries.size(), 3u);
    for (const auto& [name, tensor] : parameters.layers[static_cast<size_t>(layer)]) {
      EXPECT_EQ(entries[name]["shape"].get<std::vector<int64_t>>(), tensor.shape) << name;
      EXPECT_EQ(entries[name]["dtype"].get<std::string>(), "torch.float32") << name;
      EXPECT_EQ(floats(entries[name]["values"]), tensor.values) << name;
    }
  }
}

}  // namespace
}  // namespace cq
