// Issue 18.2: a quantization flag that would change nothing is an error naming what is
// missing, and counts (--seqlen, --max-windows, -n, --limit, ...) must be >= 1.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "quant/flag_effects.h"
#include "test_support.h"

namespace cq {
namespace {


std::string message_for(const std::string& flag, const QuantConfig& config) {
  for (const auto& found : flags_without_effect(GivenFlags{flag}, config))
    if (found.flag == flag) return found.message;
  return "";
}

QuantConfig w8a8(const std::string& activation = "crossquant") {
  QuantConfig config;
  config.apply_scheme("w8a8");
  config.activation_method = activation;
  return config;
}

TEST(FlagEffects, EachFlagNamesWhatIsMissing) {
  const QuantConfig fp32;
  EXPECT_EQ(message_for("--alpha", fp32), "--alpha has no effect without activation quantization (add --scheme or --abits)");
  EXPECT_NE(message_for("--alpha", w8a8("per-token")).find("add --act-quant crossquant"), std::string::npos);
  EXPECT_EQ(message_for("--alpha", w8a8()), "");
  EXPECT_NE(message_for("--kernel-target", w8a8()).find("add --act-quant remove-kernel"), std::string::npos);
  EXPECT_EQ(message_for("--kernel-target", w8a8("remove-kernel")), "");
  EXPECT_NE(message_for("--weight-alpha", w8a8()).find("add --weight-quant crossquant"), std::string::npos);
  EXPECT_NE(message_for("--group-size", w8a8()).find("add --weight-quant group"), std::string::npos);
  EXPECT_NE(message_for("--weight-asymmetric", w8a8()).find("add --weight-quant group"), std::string::npos);
  EXPECT_NE(message_for("--weight-quant", fp32).find("add --scheme or --wbits"), std::string::npos);
  EXPECT_NE(message_for("--migration-strength", w8a8()).find("without --method smoothquant"), std::string::npos);
  for (const char* flag : {"--awq-grid", "--awq-clip-tokens", "--awq-no-clip"})
    EXPECT_NE(message_for(flag, w8a8()).find("without --method awq"), std::string::npos) << flag;
  for (const char* flag : {"--gptq-damp", "--act-order"})
    EXPECT_NE(message_for(flag, w8a8()).find("without --method gptq"), std::string::npos) << flag;
  for (const char* flag : {"--calib-samples", "--calib-seqlen"})
    EXPECT_NE(message_for(flag, w8a8()).find("without --calib FILE"), std::string::npos) << flag;
  EXPECT_NE(message_for("--method", fp32).find("without quantization"), std::string::npos);
  EXPECT_NE(message_for("--act-quant", fp32).find("activations are not quantized"), std::string::npos);
  EXPECT_NE(message_for("--quantize-bmm-input", fp32).find("--abits"), std::string::npos);
  QuantConfig group = w8a8();
  group.weight_method = "group";
  EXPECT_EQ(message_for("--group-size", group), "");
  QuantConfig awq = group;
  awq.method = "awq";
  awq.awq_clip = false;
  EXPECT_NE(message_for("--awq-clip-tokens", awq).find("with --awq-no-clip"), std::string::npos);
  EXPECT_EQ(message_for("--awq-grid", awq), "");
  QuantConfig gptq = w8a8();
  gptq.method = "gptq";
  EXPECT_EQ(message_for("--act-order", gptq), "");
  EXPECT_EQ(message_for("--gptq-damp", gptq), "");
}

// Several configurations (cq sweep rows, cq eval --compare): refused only where it acts in none.
TEST(FlagEffects, AcrossConfigurationsAFlagMustActSomewhere) {
  const GivenFlags alpha{"--alpha"};
  EXPECT_EQ(test::error_of([&] { require_flags_take_effect_somewhere(alpha, {w8a8("per-token"), w8a8()}); }), "");
  EXPECT_NE(test::error_of([&] { require_flags_take_effect_somewhere(alpha, {w8a8("per-token"), w8a8("per-tensor")}); })
                .find("--alpha has no effect"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { require_flags_take_effect_somewhere(alpha, {}); }).find("no configuration here is quantized"),
            std::string::npos);
}

void expect_clean_failure(const test::CommandResult& result, const std::string& must_contain) {
  EXPECT_NE(result.exit_code, 0) << result.output;
  EXPECT_EQ(result.output.rfind("cq: error: ", 0), 0u) << result.output;
  EXPECT_NE(result.output.find(must_contain), std::string::npos) << result.output;
  EXPECT_EQ(std::count(result.output.begin(), result.output.end(), '\n'), 1) << result.output;
}

TEST(FlagEffects, CommandLineRefusesIdleFlagsAndZeroCounts) {
  const std::string model = "'" + test::synthetic_model("llama-gqa").string() + "'";
  const std::string ppl = "ppl --model " + model + " --text x ";
  expect_clean_failure(test::run_cq(ppl + "--alpha 0.5"),
                       "--alpha has no effect without activation quantization (add --scheme or --abits)");
  expect_clean_failure(test::run_cq(ppl + "--scheme w8a8 --act-quant per-token --alpha 0.5"), "add --act-quant crossquant");
  expect_clean_failure(test::run_cq(ppl + "--scheme w8a8 --group-size 64"), "--group-size has no effect");
  expect_clean_failure(test::run_cq(ppl + "--scheme w8a8 --migration-strength 0.5"), "without --method smoothquant");
  expect_clean_failure(test::run_cq(ppl + "--scheme w4a8-g128 --method rtn --awq-no-clip"), "without --method awq");
  expect_clean_failure(test::run_cq(ppl + "--scheme w8a8 --calib-samples 4"), "without --calib FILE");
  expect_clean_failure(test::run_cq(ppl + "--method rtn"), "--method rtn has no effect without quantization");
  for (const char* count : {"--seqlen 0", "--seqlen -5", "--max-windows 0", "--batch 0", "--seqlen abc"})
    expect_clean_failure(test::run_cq(ppl + count), std::string(count).substr(0, std::string(count).find(' ')) + ": must be a count >= 1");
  expect_clean_failure(test::run_cq("generate --model " + model + " --prompt x -n 0"), "--tokens: must be a count >= 1");
  expect_clean_failure(test::run_cq("eval --model " + model + " --tasks piqa --data-dir x --limit 0"), "--limit: must be a count >= 1");
  expect_clean_failure(test::run_cq(ppl + "--scheme w8a8 --calib-samples 0"), "--calib-samples: must be a count >= 1");
  // cq kernel quantizes activations to 8 bits by itself: --alpha acts there without --abits...
  expect_clean_failure(test::run_cq("kernel --model " + model + " --text x --alpha 0.3 --alphas 0.1,0.2"),
                       "--alpha has no effect with --alphas");
  // ...and a sweep's --alpha acts on its CrossQuant rows, so only a grid without them refuses it.
  expect_clean_failure(test::run_cq("sweep --model " + model + " --text x --grid 'scheme=w8a8;act=per-token' --alpha 0.3"),
                       "(in every configuration)");
}

}  // namespace
}  // namespace cq
