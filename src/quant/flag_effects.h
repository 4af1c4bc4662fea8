#pragma once
// "A flag that would change nothing is an error": which of the quantization flags a user
// gave have no effect under the setting they resolve to, and what is missing for them to
// act. Flags are named as the command line spells them; any front end that takes these
// settings by name (the CLI, a Python module) reports with the same words.
#include <set>
#include <string>
#include <vector>

#include "quant/quant_config.h"

namespace cq {

// The quantization flags given on the command line, by long name ("--alpha").
using GivenFlags = std::set<std::string>;

struct FlagWithoutEffect {
  std::string flag;     // "--alpha"
  std::string message;  // the whole error line, naming what is missing
};

// Every given flag that changes nothing under `resolved`, in a fixed order.
std::vector<FlagWithoutEffect> flags_without_effect(const GivenFlags& given, const QuantConfig& resolved);
// Throws cq::Error with the first one's message.
void require_flags_take_effect(const GivenFlags& given, const QuantConfig& resolved);
// Commands that run several configurations (cq sweep rows, cq eval --compare) apply the
// given flags to each: a flag is refused when it changes nothing in every one of them.
void require_flags_take_effect_somewhere(const GivenFlags& given, const std::vector<QuantConfig>& configurations);

}  // namespace cq
