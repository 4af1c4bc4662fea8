// Resolving a setting from what a front end was given (quant/resolve_config.h): the defaults
// each --method brings, as docs/BASELINES.md states them, and explicit flags winning.
#include <gtest/gtest.h>

#include "quant/resolve_config.h"
#include "test_support.h"

namespace cq {
namespace {

QuantConfig resolve(const std::string& method, GivenFlags given = {}, const std::string& scheme = "",
                    QuantConfig values = {}) {
  QuantRequest request;
  request.values = values;
  request.values.method = method;
  request.scheme = scheme;
  // SmoothQuant and AWQ need a calibration text; its contents are not read here.
  if (method == "smoothquant" || method == "awq" || method == "gptq") request.calib = "calibration.txt";
  request.given = std::move(given);
  request.given.insert("--method");
  return resolve_quant_config(request);
}

TEST(ResolveConfig, EachMethodBringsItsDefaults) {
  // AWQ alone: W4A8, group-wise 128 with zero points, per-token activations.
  const QuantConfig awq = resolve("awq");
  EXPECT_EQ(awq.weight_bits, 4);
  EXPECT_EQ(awq.activation_bits, 8);
  EXPECT_EQ(awq.weight_method, "group");
  EXPECT_EQ(awq.group_size, 128);
  EXPECT_TRUE(awq.weight_asymmetric);
  EXPECT_EQ(awq.activation_method, "per-token");
  // SmoothQuant alone: W8A8 per-channel, per-token activations, symmetric.
  const QuantConfig smoothquant = resolve("smoothquant");
  EXPECT_EQ(smoothquant.weight_bits, 8);
  EXPECT_EQ(smoothquant.activation_bits, 8);
  EXPECT_EQ(smoothquant.weight_method, "per-channel");
  EXPECT_FALSE(smoothquant.weight_asymmetric);
  EXPECT_EQ(smoothquant.activation_method, "per-token");
  // rtn and crossquant bring no bit widths; their activations differ.
  EXPECT_EQ(resolve("rtn", {"--scheme"}, "w8a8").activation_method, "per-token");
  EXPECT_EQ(resolve("crossquant", {"--scheme"}, "w8a8").activation_method, "crossquant");
  // ... so --method rtn alone quantizes nothing, which is refused as a flag without effect.
  EXPECT_NE(test::error_of([] { resolve("rtn"); }).find("--method rtn has no effect"), std::string::npos);
}

TEST(ResolveConfig, ExplicitFlagsWinOverTheMethodsDefaults) {
  QuantConfig values;
  values.activation_method = "crossquant";
  EXPECT_EQ(resolve("awq", {"--act-quant"}, "", values).activation_method, "crossquant");
  values.weight_bits = 3;
  const QuantConfig three_bits = resolve("awq", {"--wbits"}, "", values);
  EXPECT_EQ(three_bits.weight_bits, 3);
  EXPECT_EQ(three_bits.weight_method, "per-channel");  // no preset once a bit width is given
  EXPECT_FALSE(three_bits.weight_asymmetric);          // zero points are AWQ's for groups only
  // A scheme given wins over the method's own.
  EXPECT_EQ(resolve("awq", {"--scheme"}, "w8a8").weight_bits, 8);
  EXPECT_NE(test::error_of([] { resolve("quarot"); }).find("--method 'quarot' is not one of crossquant, rtn, smoothquant, awq, gptq"),
            std::string::npos);
  // GPTQ alone: W4A8 per-channel, symmetric, per-token activations, λ = 1 %, no act-order.
  const QuantConfig gptq = resolve("gptq");
  EXPECT_EQ(gptq.weight_bits, 4);
  EXPECT_EQ(gptq.activation_bits, 8);
  EXPECT_EQ(gptq.weight_method, "per-channel");
  EXPECT_FALSE(gptq.weight_asymmetric);
  EXPECT_EQ(gptq.activation_method, "per-token");
  EXPECT_DOUBLE_EQ(gptq.gptq_dampening, 0.01);
  EXPECT_FALSE(gptq.gptq_act_order);
  // Flags of GPTQ without it, CrossQuant weights, and static CrossQuant with it are refused.
  EXPECT_NE(test::error_of([] { resolve("rtn", {"--act-order", "--wbits"}, "", [] { QuantConfig c; c.weight_bits = 4; c.gptq_act_order = true; return c; }()); })
                .find("--act-order has no effect without --method gptq"),
            std::string::npos);
  EXPECT_NE(test::error_of([] { resolve("gptq", {"--weight-quant", "--wbits"}, "", [] { QuantConfig c; c.weight_bits = 4; c.weight_method = "crossquant"; return c; }()); })
                .find("per-channel or group-wise"),
            std::string::npos);
}

// --calib without a calibrating method makes the activation statistics static where the
// method has calibratable ones (CrossQuant's c_j, per-tensor's Δ), and is refused elsewhere.
TEST(ResolveConfig, CalibMakesCalibratableActivationsStatic) {
  const auto with_calib = [](const std::string& activation) {
    QuantRequest request;
    request.scheme = "w8a8";
    request.values.activation_method = activation;
    request.calib = "calibration.txt";
    request.given = {"--scheme", "--act-quant", "--calib"};
    return resolve_quant_config(request);
  };
  const QuantConfig cross = with_calib("crossquant");
  EXPECT_TRUE(cross.static_columns);
  EXPECT_FALSE(cross.static_tensor_scale);
  const QuantConfig tensor = with_calib("per-tensor");
  EXPECT_TRUE(tensor.static_tensor_scale);
  EXPECT_FALSE(tensor.static_columns);
  EXPECT_NE(test::error_of([&] { with_calib("per-token"); }).find("needs --act-quant per-tensor or crossquant"),
            std::string::npos);
}

}  // namespace
}  // namespace cq
