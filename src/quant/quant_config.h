#pragma once
// A whole-model quantization setting (what `--scheme/--wbits/--abits/...` select) and
// its application to every decoder linear layer (SPEC.md "Settings named in the paper").
#include <cstdint>
#include <span>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace cq {

class Transformer;

struct QuantConfig {
  int weight_bits = 16;                   // 16: weights not quantized
  int activation_bits = 16;               // 16: activations not quantized
  std::string weight_method = "per-channel";  // per-channel | group | crossquant
  int64_t group_size = 128;
  bool weight_asymmetric = false;         // group-wise with zero points (AWQ's setting)
  double weight_alpha = 0.55;             // CrossQuant on weights (α_W)
  std::string activation_method = "crossquant";  // per-token | per-tensor | crossquant | remove-kernel
  double alpha = 0.15;                    // CrossQuant on activations
  double kernel_target = -1.0;            // remove-kernel: share to zero (< 0: per-token's kernel)
  std::string scheme;                     // the preset named, if any (for reports)
  // Static CrossQuant: c_j from calibration instead of the current window (set by --calib).
  bool static_columns = false;
  int64_t calib_samples = 128;
  int64_t calib_seqlen = 512;
  std::string calib_source;               // for reports

  bool quantizes_weights() const { return weight_bits < 16; }
  bool quantizes_activations() const { return activation_bits < 16; }
  // Sets bit widths and weight granularity of w8a8 | w4a8 | w4a8-g128 | w4a4 | w16a16.
  void apply_scheme(const std::string& name);
  void validate() const;
  // e.g. "W8A8 per-channel / crossquant α=0.15".
  std::string describe() const;
  nlohmann::json to_json() const;
};

// Fake-quantizes the weights of every decoder linear layer once and installs the
// activation quantizer at every linear input. Embeddings and lm_head stay in full precision.
// Static CrossQuant calibrates on `calibration_tokens` with the unquantized model first.
void apply_quantization(Transformer& model, const QuantConfig& config, std::span<const int32_t> calibration_tokens = {});

}  // namespace cq
