#include "quant/flag_effects.h"

#include <fmt/format.h>

#include "util/error.h"

namespace cq {

std::vector<FlagWithoutEffect> flags_without_effect(const GivenFlags& given, const QuantConfig& resolved) {
  std::vector<FlagWithoutEffect> found;
  auto refuse = [&](const char* flag, std::string message) {
    if (given.count(flag)) found.push_back({flag, std::move(message)});
  };
  const bool weights = resolved.quantizes_weights(), activations = resolved.quantizes_activations();
  const std::string without_activations = "has no effect without activation quantization (add --scheme or --abits)";
  const std::string without_weights = "has no effect without weight quantization (add --scheme or --wbits)";

  if (!weights && !activations)
    refuse("--method", fmt::format("--method {} has no effect without quantization (add --scheme, --wbits or --abits)",
                                   resolved.method));
  if (!weights && !activations && resolved.rotation != "none")
    refuse("--rotate", fmt::format("--rotate {} has no effect without quantization: a rotated model computes the same "
                                   "function (add --scheme, --wbits or --abits)",
                                   resolved.rotation));
  if (resolved.rotation == "none")
    refuse("--rotate-seed", "--rotate-seed has no effect without --rotate hadamard (it draws the rotation's signs)");
  // Activations.
  if (!activations)
    refuse("--act-quant", fmt::format("--act-quant {} has no effect: activations are not quantized (A{}); give --abits N "
                                      "(2..8) or --scheme",
                                      resolved.activation_method, resolved.activation_bits));
  if (!activations) refuse("--alpha", "--alpha " + without_activations);
  else if (resolved.activation_method != "crossquant")
    refuse("--alpha", fmt::format("--alpha has no effect with {} activations: it is CrossQuant's α (add --act-quant crossquant)",
                                  resolved.activation_method));
  if (!activations) refuse("--kernel-target", "--kernel-target " + without_activations);
  else if (resolved.activation_method != "remove-kernel")
    refuse("--kernel-target", fmt::format("--kernel-target has no effect with {} activations (add --act-quant remove-kernel)",
                                          resolved.activation_method));
  if (!activations) refuse("--quantize-bmm-input", "--quantize-bmm-input " + without_activations);
  // Weights.
  if (!weights) {
    for (const char* flag : {"--weight-quant", "--weight-alpha", "--group-size", "--weight-asymmetric"})
      refuse(flag, fmt::format("{} {}", flag, without_weights));
  } else {
    if (resolved.weight_method != "crossquant")
      refuse("--weight-alpha", fmt::format("--weight-alpha has no effect with {} weights (add --weight-quant crossquant)",
                                           resolved.weight_method));
    if (resolved.weight_method != "group")
      for (const char* flag : {"--group-size", "--weight-asymmetric"})
        refuse(flag, fmt::format("{} has no effect with {} weights (add --weight-quant group or a -g128 --scheme)", flag,
                                 resolved.weight_method));
  }
  // Methods and calibration.
  if (resolved.method != "smoothquant")
    refuse("--migration-strength", "--migration-strength has no effect without --method smoothquant");
  if (resolved.method != "smoothquant")
    refuse("--smoothquant-scales", "--smoothquant-scales has no effect without --method smoothquant");
  if (resolved.method != "awq") {
    for (const char* flag : {"--awq-grid", "--awq-clip-tokens", "--awq-no-clip", "--awq-results"})
      refuse(flag, fmt::format("{} has no effect without --method awq", flag));
  } else if (!resolved.awq_results.empty()) {
    for (const char* flag : {"--awq-grid", "--awq-clip-tokens", "--awq-no-clip"})
      refuse(flag, fmt::format("{} has no effect with --awq-results: the file's scales and clips replace AWQ's search", flag));
  } else if (!resolved.awq_clip) {
    refuse("--awq-clip-tokens", "--awq-clip-tokens has no effect with --awq-no-clip (the clip search is skipped)");
  }
  if (resolved.method != "omniquant")
    refuse("--omni-params", "--omni-params has no effect without --method omniquant (it holds OmniQuant's learned parameters)");
  for (const char* flag : {"--epochs", "--lr-lwc", "--lr-let"}) {
    if (resolved.method != "omniquant")
      refuse(flag, fmt::format("{} has no effect without --method omniquant (it sets OmniQuant's calibration)", flag));
    else if (!resolved.omni_params.empty())
      refuse(flag, fmt::format("{} has no effect with --omni-params: the file's parameters are applied, nothing is trained "
                               "(give --calib instead to train them)",
                               flag));
  }
  if (resolved.method == "omniquant" && resolved.omni_epochs == 0)
    for (const char* flag : {"--lr-lwc", "--lr-let"})
      refuse(flag, fmt::format("{} has no effect with --epochs 0 (OmniQuant's initialisation, no training)", flag));
  if (resolved.method != "gptq")
    for (const char* flag : {"--gptq-damp", "--act-order"})
      refuse(flag, fmt::format("{} has no effect without --method gptq", flag));
  if (resolved.engine != "int")
    refuse("--quantize-lm-head", fmt::format("--quantize-lm-head has no effect with --engine {}: only the integer engine "
                                             "quantizes lm_head (add --engine int)",
                                             resolved.engine));
  if (resolved.calib_source.empty())
    for (const char* flag : {"--calib-samples", "--calib-seqlen"})
      refuse(flag, fmt::format("{} has no effect without --calib FILE", flag));
  return found;
}

void require_flags_take_effect(const GivenFlags& given, const QuantConfig& resolved) {
  const std::vector<FlagWithoutEffect> found = flags_without_effect(given, resolved);
  if (!found.empty()) throw Error(found.front().message);
}

void require_flags_take_effect_somewhere(const GivenFlags& given, const std::vector<QuantConfig>& configurations) {
  if (configurations.empty()) {  // e.g. `cq eval --compare fp32 --alpha 0.5`
    if (!given.empty()) fail("{} has no effect: no configuration here is quantized", *given.begin());
    return;
  }
  // The first configuration's messages, for the flags that act in none of them.
  for (const FlagWithoutEffect& candidate : flags_without_effect(given, configurations.front())) {
    bool acts_somewhere = false;
    for (std::size_t i = 1; i < configurations.size() && !acts_somewhere; ++i) {
      bool idle_here = false;
      for (const FlagWithoutEffect& other : flags_without_effect(given, configurations[i]))
        idle_here = idle_here || other.flag == candidate.flag;
      acts_somewhere = !idle_here;
    }
    if (!acts_somewhere) fail("{} (in every configuration)", candidate.message);
  }
}

}  // namespace cq
