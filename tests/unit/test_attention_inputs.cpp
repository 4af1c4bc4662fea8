// --quantize-bmm-input: q, k and v are quantized with the activation quantizer before the
// attention products (properties only; the PyTorch reference has no such option).
#include <gtest/gtest.h>

#include "eval/agreement.h"
#include "model/transformer.h"
#include "ptq/apply_quantization.h"
#include "quant/quant_config.h"
#include "test_support.h"
#include "util/error.h"

namespace cq {
namespace {

TEST(AttentionInputs, QuantizingQkvChangesLogitsSlightlyAndOnlyWhenAsked) {
  const auto dir = test::synthetic_model("llama-gqa");
  const auto tokens = random_tokens(96, 2 * 12, 5);
  auto logits_for = [&](bool bmm, int bits) {
    Transformer model(dir);
    QuantConfig config;
    config.activation_bits = bits;
    config.activation_method = "per-token";
    config.quantize_attention_inputs = bmm;
    apply_quantization(model, config);
    std::vector<float> logits(2 * 12 * 96);
    model.forward(tokens, 2, 12, logits);
    return logits;
  };
  const auto plain = logits_for(false, 8), bmm8 = logits_for(true, 8), bmm3 = logits_for(true, 3);
  double diff8 = 0, diff3 = 0, scale = 0;
  for (size_t i = 0; i < plain.size(); ++i) {
    diff8 = std::max(diff8, static_cast<double>(std::abs(plain[i] - bmm8[i])));
    diff3 = std::max(diff3, static_cast<double>(std::abs(plain[i] - bmm3[i])));
    scale = std::max(scale, static_cast<double>(std::abs(plain[i])));
  }
  EXPECT_GT(diff8, 0.0);            // the flag does something
  EXPECT_LT(diff8 / scale, 0.05);   // 8-bit q/k/v barely move the logits
  EXPECT_GT(diff3, diff8);          // and fewer bits move them more
}

TEST(AttentionInputs, NeedsQuantizedActivations) {
  QuantConfig config;
  config.quantize_attention_inputs = true;
  EXPECT_THROW(config.validate(), Error);
}

}  // namespace
}  // namespace cq
